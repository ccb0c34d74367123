//! The view's state and what each key does: pure, so it is tested without a terminal.

use cpuprof_live::snapshot::{ProcessRow, Snapshot};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// The column the processes are sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Cores used, most first.
    Cpu,
    /// Run-queue wait share, most first.
    Wait,
    /// Threads, most first.
    Threads,
    /// Name, A to Z.
    Name,
}

impl SortKey {
    /// Its name in the header.
    pub fn label(self) -> &'static str {
        match self {
            SortKey::Cpu => "cpu",
            SortKey::Wait => "wait",
            SortKey::Threads => "threads",
            SortKey::Name => "name",
        }
    }
}

/// What the loop should do after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond redrawing.
    None,
    /// Quit and restore the terminal.
    Quit,
    /// Record this process into a report.
    Record(u32),
}

/// Everything the view shows and remembers between refreshes.
#[derive(Debug)]
pub struct App {
    /// The latest refresh.
    pub snapshot: Snapshot,
    /// The sort column.
    pub sort: SortKey,
    /// Only processes whose name or command contains this.
    pub filter: String,
    /// Typing a filter (after `/`).
    pub filtering: bool,
    /// The process the user selected, by pid (kept across refreshes and re-sorts, as in
    /// `htop`); `None`: the first row, whichever it is at each refresh (as in `top`), until
    /// the user moves the selection.
    pub selected: Option<u32>,
    /// The selected process's threads are shown.
    pub expanded: bool,
    /// Refreshes are not applied.
    pub paused: bool,
    /// The help is shown.
    pub help: bool,
    /// The status bar's message.
    pub status: String,
}

impl App {
    /// A view of `snapshot`.
    pub fn new(snapshot: Snapshot) -> Self {
        let mut app = App {
            snapshot,
            sort: SortKey::Cpu,
            filter: String::new(),
            filtering: false,
            selected: None,
            expanded: false,
            paused: false,
            help: false,
            status: String::new(),
        };
        app.drop_gone_selection();
        app
    }

    /// A selected process that is gone: the selection goes back to following the first row.
    fn drop_gone_selection(&mut self) {
        if let Some(pid) = self.selected {
            if !self.snapshot.processes.iter().any(|p| p.pid == pid) {
                self.selected = None;
            }
        }
    }

    /// Takes a new refresh (ignored while paused).
    pub fn update(&mut self, snapshot: Snapshot) {
        if !self.paused {
            self.snapshot = snapshot;
            self.drop_gone_selection();
        }
    }

    /// The processes shown, in order.
    pub fn rows(&self) -> Vec<&ProcessRow> {
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&ProcessRow> = self
            .snapshot
            .processes
            .iter()
            .filter(|p| {
                needle.is_empty()
                    || p.name.to_lowercase().contains(&needle)
                    || p.command.join(" ").to_lowercase().contains(&needle)
            })
            .collect();
        let threads = |p: &ProcessRow| p.threads.running + p.threads.runnable + p.threads.sleeping;
        rows.sort_by(|a, b| {
            let o = match self.sort {
                SortKey::Cpu => b.cpu_cores.total_cmp(&a.cpu_cores),
                SortKey::Wait => b.runq_wait_share.total_cmp(&a.runq_wait_share),
                SortKey::Threads => threads(b).cmp(&threads(a)),
                SortKey::Name => a.name.cmp(&b.name),
            };
            o.then(a.pid.cmp(&b.pid))
        });
        rows
    }

    /// The selected row's index among [`App::rows`] (the first when none is selected or the
    /// selected one is gone).
    pub fn selected_index(&self) -> usize {
        let rows = self.rows();
        self.selected
            .and_then(|pid| rows.iter().position(|p| p.pid == pid))
            .unwrap_or(0)
    }

    /// The selected process.
    pub fn selected_row(&self) -> Option<&ProcessRow> {
        let i = self.selected_index();
        self.rows().get(i).copied()
    }

    fn move_selection(&mut self, by: isize) {
        let rows = self.rows();
        if rows.is_empty() {
            return;
        }
        let i = self.selected_index() as isize + by;
        let i = i.clamp(0, rows.len() as isize - 1) as usize;
        self.selected = Some(rows[i].pid);
    }

    /// Handles one key.
    pub fn key(&mut self, k: KeyEvent) -> Action {
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if self.filtering {
            match k.code {
                KeyCode::Enter | KeyCode::Esc => self.filtering = false,
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => self.filter.push(c),
                _ => {}
            }
            return Action::None;
        }
        if self.help {
            // Any key closes the help; q still quits.
            self.help = false;
            return match k.code {
                KeyCode::Char('q') => Action::Quit,
                _ => Action::None,
            };
        }
        match k.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Esc if !self.filter.is_empty() => self.filter.clear(),
            KeyCode::Esc => self.expanded = false,
            KeyCode::Char('?') | KeyCode::Char('h') => self.help = true,
            KeyCode::Char('c') => self.sort = SortKey::Cpu,
            KeyCode::Char('w') => self.sort = SortKey::Wait,
            KeyCode::Char('t') => self.sort = SortKey::Threads,
            KeyCode::Char('n') => self.sort = SortKey::Name,
            KeyCode::Char('/') => {
                self.filtering = true;
                self.filter.clear();
            }
            KeyCode::Char('p') | KeyCode::Char(' ') => self.paused = !self.paused,
            KeyCode::Enter => self.expanded = !self.expanded,
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::PageDown => self.move_selection(10),
            KeyCode::PageUp => self.move_selection(-10),
            KeyCode::Home => self.move_selection(isize::MIN / 2),
            KeyCode::End => self.move_selection(isize::MAX / 2),
            KeyCode::Char('r') => {
                if let Some(p) = self.selected_row() {
                    return Action::Record(p.pid);
                }
            }
            _ => {}
        }
        Action::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pid: u32, name: &str, cpu: f64, wait: f64) -> ProcessRow {
        ProcessRow {
            pid,
            name: name.into(),
            cpu_cores: cpu,
            runq_wait_share: wait,
            ..Default::default()
        }
    }

    fn app() -> App {
        App::new(Snapshot {
            processes: vec![
                row(1, "init", 0.0, 0.0),
                row(20, "matmul", 1.9, 0.5),
                row(30, "python3", 0.5, 0.9),
            ],
            ..Default::default()
        })
    }

    fn press(a: &mut App, c: KeyCode) -> Action {
        a.key(KeyEvent::new(c, KeyModifiers::NONE))
    }

    #[test]
    fn sorts_filters_and_keeps_the_selection() {
        let mut a = app();
        let pids = |a: &App| a.rows().iter().map(|p| p.pid).collect::<Vec<_>>();
        assert_eq!(pids(&a), [20, 30, 1]);
        press(&mut a, KeyCode::Char('w'));
        assert_eq!(pids(&a), [30, 20, 1]);
        assert_eq!(
            a.selected, None,
            "no selection yet: the first row, whichever it is"
        );
        assert_eq!(a.selected_row().unwrap().pid, 30);
        press(&mut a, KeyCode::Up);
        assert_eq!(a.selected, Some(30));
        press(&mut a, KeyCode::Down);
        assert_eq!(a.selected, Some(20));
        press(&mut a, KeyCode::Char('n'));
        assert_eq!(pids(&a), [1, 20, 30]);
        assert_eq!(a.selected_index(), 1, "the selection follows its process");
        press(&mut a, KeyCode::Char('/'));
        for c in "PYTH".chars() {
            press(&mut a, KeyCode::Char(c.to_ascii_lowercase()));
        }
        press(&mut a, KeyCode::Enter);
        assert_eq!(pids(&a), [30]);
        assert_eq!(press(&mut a, KeyCode::Char('r')), Action::Record(30));
        press(&mut a, KeyCode::Esc);
        assert_eq!(pids(&a).len(), 3);
    }

    #[test]
    fn pause_help_and_quit() {
        let mut a = app();
        press(&mut a, KeyCode::Char('p'));
        a.update(Snapshot::default());
        assert_eq!(
            a.snapshot.processes.len(),
            3,
            "paused: the refresh is not shown"
        );
        press(&mut a, KeyCode::Char('?'));
        assert!(a.help);
        assert_eq!(press(&mut a, KeyCode::Char('x')), Action::None);
        assert!(!a.help);
        assert_eq!(press(&mut a, KeyCode::Char('q')), Action::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(a.key(ctrl_c), Action::Quit);
    }
}
