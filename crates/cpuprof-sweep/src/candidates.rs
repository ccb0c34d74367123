//! Which settings a sweep measures.
//!
//! Without `--set`: the program as it is; the fix the analysis recommends for each finding
//! (its exact variables); one thread per pool (every loaded runtime's variable at 1); and the
//! budget divided among the processes running a pool. With `--set VAR=a,b,c` (repeatable):
//! the grid of those values. Always the program as it is first, duplicates dropped, at most
//! `max` candidates.

use std::collections::BTreeMap;

use cpuprof_analysis::runtimes;
use cpuprof_model::{Analysis, Profile};

/// A setting to measure and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Environment variables for the program.
    pub setting: BTreeMap<String, String>,
    /// `as it is`, `fix of <finding>`, `one thread per pool`, `budget // processes`, `--set`.
    pub origin: String,
}

/// Parses `VAR=a,b,c`.
pub fn parse_set(s: &str) -> Result<(String, Vec<String>), String> {
    let (var, values) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not VAR=value[,value...]"))?;
    let ok_name = !var.is_empty()
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !var.starts_with(|c: char| c.is_ascii_digit());
    if !ok_name {
        return Err(format!("'{var}' is not an environment variable name"));
    }
    let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
    if values.iter().any(String::is_empty) {
        return Err(format!("'{s}' has an empty value"));
    }
    Ok((var.to_string(), values))
}

/// The grid of `--set` values, as it is first.
pub fn from_sets(sets: &[(String, Vec<String>)], max: usize) -> Vec<Candidate> {
    let mut grid: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
    for (var, values) in sets {
        grid = grid
            .into_iter()
            .flat_map(|g| {
                values.iter().map(move |v| {
                    let mut g = g.clone();
                    g.insert(var.clone(), v.clone());
                    g
                })
            })
            .collect();
    }
    let mut out = vec![as_it_is()];
    for g in grid {
        push(&mut out, g, "--set");
    }
    out.truncate(max.max(1));
    out
}

/// Candidates chosen from a first recording.
pub fn from_analysis(profile: &Profile, analysis: &Analysis, max: usize) -> Vec<Candidate> {
    let mut out = vec![as_it_is()];
    for f in &analysis.findings {
        if !f.setting.is_empty() {
            push(&mut out, f.setting.clone(), &format!("fix of {}", f.id));
        }
    }
    // Every pool runtime loaded, with the processes that run it.
    let mut vars: BTreeMap<&'static str, usize> = BTreeMap::new();
    for r in &analysis.runtimes {
        if let Some(rt) = runtimes::by_name(&r.name) {
            if !rt.limit_var.is_empty() {
                *vars.entry(rt.limit_var).or_default() += 1;
            }
        }
    }
    let one: BTreeMap<String, String> = vars
        .keys()
        .map(|v| (v.to_string(), "1".to_string()))
        .collect();
    push(&mut out, one, "one thread per pool");
    let cores = profile.machine.cpu_budget().floor().max(1.0) as usize;
    let share: BTreeMap<String, String> = vars
        .iter()
        .map(|(v, procs)| (v.to_string(), (cores / procs.max(&1)).max(1).to_string()))
        .collect();
    push(&mut out, share, "budget // processes");
    out.truncate(max.max(1));
    out
}

fn as_it_is() -> Candidate {
    Candidate {
        setting: BTreeMap::new(),
        origin: "as it is".into(),
    }
}

fn push(out: &mut Vec<Candidate>, setting: BTreeMap<String, String>, origin: &str) {
    if setting.is_empty() || out.iter().any(|c| c.setting == setting) {
        return;
    }
    out.push(Candidate {
        setting,
        origin: origin.into(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_parse_and_make_a_grid() {
        assert_eq!(
            parse_set("OPENBLAS_NUM_THREADS=1,2,4").unwrap(),
            (
                "OPENBLAS_NUM_THREADS".into(),
                vec!["1".into(), "2".into(), "4".into()]
            )
        );
        assert!(parse_set("NOEQUALS").is_err());
        assert!(parse_set("1X=2").is_err());
        assert!(parse_set("A=1,,2").is_err());
        let sets = vec![
            ("A".to_string(), vec!["1".to_string(), "2".to_string()]),
            ("B".to_string(), vec!["x".to_string(), "y".to_string()]),
        ];
        let c = from_sets(&sets, 10);
        assert_eq!(c.len(), 5);
        assert!(c[0].setting.is_empty());
        assert_eq!(c[4].setting["A"], "2");
        assert_eq!(c[4].setting["B"], "y");
        assert_eq!(from_sets(&sets, 3).len(), 3);
    }
}
