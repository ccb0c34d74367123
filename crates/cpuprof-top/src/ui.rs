//! Drawing one frame: the machine's header, the process table, the selected process's
//! findings (or threads), the status bar, and the help over them. Usable at 80×24: columns
//! that do not fit are dropped from the right, the command is cut to the width.

use cpuprof_live::snapshot::{ProcessRow, ThreadRow};
use cpuprof_report::escape::{command_line, printable};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use crate::app::App;

/// The keys, for the help and the status bar.
pub const HELP: &[(&str, &str)] = &[
    ("↑ ↓ j k", "select a process"),
    ("Enter", "show / hide its threads"),
    ("c w t n", "sort by CPU, run-queue wait, threads, name"),
    ("/", "filter by name or command (Enter ends, Esc clears)"),
    ("p", "pause / resume refreshing"),
    (
        "r",
        "record the selected process for 10 s into an HTML report",
    ),
    ("?", "this help"),
    ("q", "quit (also Ctrl-C)"),
];

fn severity_style(sev: &str) -> Style {
    match sev {
        "error" => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        "warning" => Style::default().fg(Color::Yellow),
        _ => Style::default().fg(Color::Cyan),
    }
}

/// The finding column: the most costly finding's id, or what the figures say alone.
fn finding_cell(p: &ProcessRow) -> Cell<'static> {
    match p.findings.first() {
        Some(f) => Cell::from(f.id.clone()).style(severity_style(&f.severity)),
        None => Cell::from(""),
    }
}

/// `OpenBLAS×2`, or `OpenBLAS×2 idle` when none of its workers is working now.
pub fn pool_text(pool: &cpuprof_live::snapshot::PoolRow) -> String {
    let idle = if pool.busy_workers == 0 { " idle" } else { "" };
    format!("{}×{}{idle}", printable(&pool.runtime), pool.threads)
}

/// The pools column: idle pools (no worker busy now) dimmed.
fn pools_cell(p: &ProcessRow) -> Cell<'static> {
    let mut spans = Vec::new();
    for (i, pool) in p.pools.iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw(" "));
        }
        let text = format!("{}×{}", printable(&pool.runtime), pool.threads);
        spans.push(match pool.busy_workers {
            0 => Span::styled(text, Style::default().fg(Color::DarkGray)),
            _ => Span::raw(text),
        });
    }
    Cell::from(Line::from(spans))
}

/// Draws the whole view.
pub fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    let detail_height = if area.height >= 20 { 9 } else { 5 };
    let [header, table, detail, status] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(3),
        Constraint::Length(detail_height),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(f, header, app);
    draw_table(f, table, app);
    match app.expanded {
        true => draw_threads(f, detail, app),
        false => draw_detail(f, detail, app),
    }
    draw_status(f, status, app);
    if app.help {
        draw_help(f, area);
    }
}

fn draw_header(f: &mut Frame, area: Rect, app: &App) {
    let m = &app.snapshot.machine;
    let psi = m.psi_some.map_or("n/a".to_string(), |v| format!("{v:.1}%"));
    let busy_style = if m.cores_busy > m.budget_cores * 0.9 {
        Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
    } else {
        Style::default().add_modifier(Modifier::BOLD)
    };
    let flagged = app
        .snapshot
        .processes
        .iter()
        .filter(|p| !p.findings.is_empty())
        .count();
    let line1 = Line::from(vec![
        Span::styled("cpuprof top", Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(format!("  budget {:.1}  busy ", m.budget_cores)),
        Span::styled(format!("{:.2}", m.cores_busy), busy_style),
        Span::raw(format!("  PSI {psi}  procs {}", m.processes)),
        match flagged {
            0 => Span::raw(""),
            n => Span::styled(format!("  flagged {n}"), Style::default().fg(Color::Red)),
        },
    ]);
    let mut line2 = vec![Span::raw(format!(
        "cores over the last {:.0} s  sort {}",
        app.snapshot.window_s,
        app.sort.label()
    ))];
    if !app.filter.is_empty() || app.filtering {
        line2.push(Span::raw(format!("  filter /{}", printable(&app.filter))));
        if app.filtering {
            line2.push(Span::raw("_").add_modifier(Modifier::SLOW_BLINK));
        }
    }
    if app.paused {
        line2.push(Span::styled(
            "  PAUSED",
            Style::default()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        ));
    }
    f.render_widget(Paragraph::new(vec![line1, Line::from(line2)]), area);
}

fn draw_table(f: &mut Frame, area: Rect, app: &App) {
    let rows = app.rows();
    let wide = area.width >= 100;
    let header = Row::new(
        [
            "PID",
            "NAME",
            "CPU/BUDGET",
            "WAIT",
            "THR R/Q/S",
            "POOLS",
            "FINDING",
        ]
        .into_iter()
        .map(|h| Cell::from(h).add_modifier(Modifier::BOLD)),
    )
    .style(Style::default().bg(Color::DarkGray));
    // Only the rows that fit are built (a machine has hundreds of processes): the window
    // of rows that keeps the selected one in view.
    let height = area.height.saturating_sub(1).max(1) as usize;
    let selected = app.selected_index().min(rows.len().saturating_sub(1));
    let offset = selected.saturating_sub(height - 1);
    let body: Vec<Row> = rows
        .iter()
        .skip(offset)
        .take(height)
        .map(|p| {
            let name = match wide {
                true => short_command(&p.command),
                false => printable(&p.name),
            };
            let name = if name.is_empty() {
                printable(&p.name)
            } else {
                name
            };
            let over = p.cpu_cores > p.budget_cores * 0.95;
            let cpu = Cell::from(format!("{:>5.2}/{:<4}", p.cpu_cores, trim(p.budget_cores)))
                .style(match over {
                    true => Style::default().add_modifier(Modifier::BOLD),
                    false => Style::default(),
                });
            let wait = Cell::from(wait_text(p.runq_wait_share, p.cpu_cores)).style(
                match p.runq_wait_share {
                    _ if p.cpu_cores < MIN_CORES => Style::default(),
                    w if w >= 0.3 => Style::default().fg(Color::Red),
                    w if w >= 0.1 => Style::default().fg(Color::Yellow),
                    _ => Style::default(),
                },
            );
            Row::new(vec![
                Cell::from(p.pid.to_string()),
                Cell::from(name),
                cpu,
                wait,
                Cell::from(format!(
                    "{}/{}/{}",
                    p.threads.running, p.threads.runnable, p.threads.sleeping
                )),
                pools_cell(p),
                finding_cell(p),
            ])
        })
        .collect();
    let name_width = if wide { 40 } else { 15 };
    let widths = [
        Constraint::Length(7),
        Constraint::Length(name_width),
        Constraint::Length(10),
        Constraint::Length(4),
        Constraint::Length(9),
        Constraint::Min(10),
        Constraint::Length(18),
    ];
    let table = Table::new(body, widths)
        .header(header)
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .column_spacing(1);
    let mut state = TableState::default();
    if !rows.is_empty() {
        state.select(Some(selected - offset));
    }
    f.render_stateful_widget(table, area, &mut state);
}

/// The command line with the program's directory left out (`cpuprof-matmul --procs 2`, not
/// `/home/me/project/target/release/cpuprof-matmul --procs 2`): the name column is narrow.
fn short_command(command: &[String]) -> String {
    let mut args = command.to_vec();
    if let Some(first) = args.first_mut() {
        if let Some((_, base)) = first.rsplit_once('/') {
            *first = base.to_string();
        }
    }
    command_line(&args)
}

/// Below this many cores a process's wait share is noise (a few waits of a thread that
/// barely ran): shown as `-`.
const MIN_CORES: f64 = 0.01;

/// The wait column: `42%`, or `-` for a process that barely ran.
pub fn wait_text(share: f64, cores: f64) -> String {
    match cores < MIN_CORES {
        true => "   -".to_string(),
        false => format!("{:>3.0}%", share * 100.0),
    }
}

/// `2`, `1.5`, `0.25`: a budget as short as it can be.
fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn draw_detail(f: &mut Frame, area: Rect, app: &App) {
    let block = Block::default().borders(Borders::TOP);
    let Some(p) = app.selected_row() else {
        f.render_widget(
            Paragraph::new("no process to show").block(block.title(" details ")),
            area,
        );
        return;
    };
    let title = format!(" {} {} ", p.pid, printable(&p.name));
    let mut lines: Vec<Line> = Vec::new();
    if p.findings.is_empty() {
        lines.push(Line::from(format!(
            "{:.2} of {} cores, {:.0}% of its runnable time waiting for a core; no finding in \
             the last {:.0} s.",
            p.cpu_cores,
            trim(p.budget_cores),
            p.runq_wait_share * 100.0,
            app.snapshot.window_s
        )));
        lines.push(Line::from(printable(&command_line(&p.command))).dim());
    }
    if !p.top_functions.is_empty() {
        let top: Vec<String> = p
            .top_functions
            .iter()
            .take(4)
            .map(|f| format!("{} {:.0}%", printable(&f.name), f.share * 100.0))
            .collect();
        lines.push(Line::from(vec![
            Span::styled("top functions: ", Style::default().fg(Color::Magenta)),
            Span::raw(top.join(", ")),
        ]));
    }
    for finding in &p.findings {
        lines.push(Line::from(vec![
            Span::styled(
                format!("{} ", finding.severity),
                severity_style(&finding.severity),
            ),
            Span::styled(
                printable(&finding.title),
                Style::default().add_modifier(Modifier::BOLD),
            ),
        ]));
        lines.push(Line::from(printable(&finding.detail)));
        lines.push(Line::from(vec![
            Span::styled("fix: ", Style::default().fg(Color::Green)),
            Span::raw(printable(&finding.fix)),
        ]));
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(block.title(title)),
        area,
    );
}

fn thread_row(t: &ThreadRow) -> Row<'static> {
    let state_style = match t.state.as_str() {
        "running" => Style::default().fg(Color::Green),
        "runnable" => Style::default().fg(Color::Red),
        _ => Style::default().dim(),
    };
    Row::new(vec![
        Cell::from(t.tid.to_string()),
        Cell::from(printable(&t.name)),
        Cell::from(t.role.clone()),
        Cell::from(t.runtime.as_deref().map(printable).unwrap_or_default()),
        Cell::from(format!("{:>5.2}", t.cpu_cores)),
        Cell::from(wait_text(t.runq_wait_share, t.cpu_cores)),
        Cell::from(t.state.clone()).style(state_style),
    ])
}

fn draw_threads(f: &mut Frame, area: Rect, app: &App) {
    let block = Block::default().borders(Borders::TOP);
    let Some(p) = app.selected_row() else {
        f.render_widget(Paragraph::new("").block(block), area);
        return;
    };
    let header = Row::new(
        ["TID", "NAME", "ROLE", "RUNTIME", "CPU", "WAIT", "STATE"]
            .into_iter()
            .map(|h| Cell::from(h).add_modifier(Modifier::BOLD)),
    );
    let rows: Vec<Row> = p.thread_list.iter().map(thread_row).collect();
    let widths = [
        Constraint::Length(7),
        Constraint::Length(15),
        Constraint::Length(13),
        Constraint::Length(18),
        Constraint::Length(5),
        Constraint::Length(4),
        Constraint::Length(8),
    ];
    let title = format!(
        " {} {}: {} threads (Enter: back) ",
        p.pid,
        printable(&p.name),
        p.thread_list.len()
    );
    f.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(block.title(title)),
        area,
    );
}

fn draw_status(f: &mut Frame, area: Rect, app: &App) {
    let text = if !app.status.is_empty() {
        printable(&app.status)
    } else if let Some(h) = &app.snapshot.hidden {
        printable(h)
    } else if let Some(n) = app.snapshot.notices.last() {
        printable(n)
    } else {
        "q quit  ? help  ↑↓ select  Enter threads  c/w/t/n sort  / filter  p pause  r record"
            .to_string()
    };
    f.render_widget(
        Paragraph::new(text).style(Style::default().bg(Color::Blue).fg(Color::White)),
        area,
    );
}

fn draw_help(f: &mut Frame, area: Rect) {
    let w = area.width.min(70);
    let h = (HELP.len() as u16 + 4).min(area.height);
    let rect = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:>9}  "), Style::default().fg(Color::Yellow)),
                Span::raw(*what),
            ])
        })
        .collect();
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" keys (any key closes) "),
        ),
        rect,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpuprof_live::snapshot::{FindingRow, PoolRow, Snapshot};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn text(t: &Terminal<TestBackend>) -> String {
        let buf = t.backend().buffer();
        let mut s = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                s.push_str(buf[(x, y)].symbol());
            }
            s.push('\n');
        }
        s
    }

    #[test]
    fn fits_80_by_24_and_escapes_names() {
        let mut app = App::new(Snapshot {
            processes: vec![ProcessRow {
                pid: 4242,
                name: "evil\x1b[2J".into(),
                cpu_cores: 1.9,
                budget_cores: 2.0,
                pools: vec![PoolRow {
                    runtime: "OpenBLAS".into(),
                    threads: 2,
                    workers: 1,
                    busy_workers: 1,
                }],
                findings: vec![FindingRow {
                    id: "oversubscription".into(),
                    severity: "error".into(),
                    title: "2 processes × 2 OpenBLAS threads".into(),
                    detail: "d".into(),
                    fix: "OPENBLAS_NUM_THREADS=1".into(),
                    est_saving_wall_s: 0.4,
                    est_saving_cpu_s: 0.0,
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
        let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
        t.draw(|f| draw(f, &app)).unwrap();
        let s = text(&t);
        assert!(s.contains("4242"), "{s}");
        assert!(s.contains("OpenBLAS×2"), "{s}");
        assert!(s.contains("oversubscription"), "{s}");
        assert!(s.contains("OPENBLAS_NUM_THREADS=1"), "{s}");
        assert!(s.contains("evil\\x1b[2J"), "{s}");
        assert!(!s.contains('\x1b'));
        app.help = true;
        t.draw(|f| draw(f, &app)).unwrap();
        assert!(text(&t).contains("keys (any key closes)"));
    }
}
