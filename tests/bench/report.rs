//! The results: one row per measurement (ours, the baseline, their ratio against a goal), the
//! machine they were taken on, printed as a text table and optionally written as markdown.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

/// What a row is judged against.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    /// ours / baseline must be at most this.
    RatioAtMost(f64),
    /// Our peak RSS must be below this many MiB.
    MemoryBelowMib(f64),
}

/// The outcome of one measurement.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Ours and the baseline, in seconds (or MiB for a memory goal).
    Measured { ours: f64, baseline: Option<f64> },
    /// Not measured, and why (a baseline tool missing or failing).
    Skipped(String),
}

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    /// What the ratio's denominator is.
    pub baseline_name: String,
    pub goal: Goal,
    pub outcome: Outcome,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        match (&self.outcome, self.goal) {
            (
                Outcome::Measured {
                    ours,
                    baseline: Some(b),
                },
                Goal::RatioAtMost(_),
            ) => Some(ours / b),
            _ => None,
        }
    }

    fn cells(&self) -> [String; 7] {
        let goal = match self.goal {
            Goal::RatioAtMost(g) => format!("<= {g}"),
            Goal::MemoryBelowMib(m) => format!("< {m} MiB"),
        };
        match &self.outcome {
            Outcome::Measured { ours, baseline } => {
                let (ours_s, base_s, ratio, pass) = match self.goal {
                    Goal::RatioAtMost(g) => {
                        let ratio = self.ratio().unwrap_or(f64::NAN);
                        (
                            format!("{ours:.2}"),
                            baseline.map_or("-".into(), |b| format!("{b:.2}")),
                            format!("{ratio:.3}"),
                            ratio <= g,
                        )
                    }
                    Goal::MemoryBelowMib(m) => {
                        (format!("{ours:.0} MiB"), "-".into(), "-".into(), *ours < m)
                    }
                };
                [
                    self.name.clone(),
                    self.baseline_name.clone(),
                    ours_s,
                    base_s,
                    ratio,
                    goal,
                    if pass { "pass" } else { "MISS" }.into(),
                ]
            }
            Outcome::Skipped(why) => [
                self.name.clone(),
                self.baseline_name.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                goal,
                format!("n/a: {why}"),
            ],
        }
    }
}

const HEADER: [&str; 7] = [
    "measurement",
    "baseline",
    "ours (s)",
    "baseline (s)",
    "ratio",
    "goal",
    "result",
];

/// The machine and build the figures come from.
#[derive(Clone, Debug)]
pub struct Context {
    pub lines: Vec<(String, String)>,
}

impl Context {
    /// Reads nproc, the CPU model, memory, kernel and load from /proc, plus the given extras.
    pub fn gather(extra: Vec<(String, String)>) -> Context {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown".into());
        let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
        let mem_kib: u64 = fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let kernel = command_line("uname", &["-sr"]);
        let load = fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        let mut lines = vec![
            ("cpus".into(), format!("{nproc} x {cpu}")),
            (
                "memory".into(),
                format!("{:.1} GiB", mem_kib as f64 / 1024.0 / 1024.0),
            ),
            ("kernel".into(), kernel),
            ("load average at start (1/5/15 min)".into(), load),
        ];
        lines.extend(extra);
        Context { lines }
    }
}

/// The CPU pressure stall counter (`/proc/pressure/cpu`, line `some`, `total=`): microseconds
/// during which at least one runnable task waited for a CPU. `None` without PSI.
pub fn cpu_stall_us() -> Option<u64> {
    fs::read_to_string("/proc/pressure/cpu")
        .ok()?
        .lines()
        .find(|l| l.starts_with("some "))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
}

/// How contended the CPUs were between two readings of [`cpu_stall_us`] `secs` apart: the
/// share of the time some task waited for a CPU. Near 0% the wall times mean what they say;
/// near 100% other work competed with every measurement and the ratios move from run to run.
pub fn cpu_pressure(start: Option<u64>, end: Option<u64>, secs: f64) -> String {
    match (start, end) {
        (Some(a), Some(b)) if secs > 0.0 && b >= a => format!(
            "{:.0}% of the run some task waited for a CPU (/proc/pressure/cpu)",
            (b - a) as f64 / 1e6 / secs * 100.0
        ),
        _ => "unknown (no /proc/pressure/cpu)".into(),
    }
}

/// The first line of a command's stdout, or "unknown".
pub fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The table as aligned text, for the terminal.
pub fn text(rows: &[Row], ctx: &Context) -> String {
    let cells: Vec<[String; 7]> = rows.iter().map(Row::cells).collect();
    let mut width = HEADER.map(str::len);
    for r in &cells {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, r: &[String]| {
        let parts: Vec<String> = r
            .iter()
            .zip(width)
            .enumerate()
            .map(|(i, (c, w))| {
                if (2..5).contains(&i) {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(&mut out, &HEADER.map(String::from));
    line(&mut out, &width.map(|w| "-".repeat(w)));
    for r in &cells {
        line(&mut out, r);
    }
    out.push('\n');
    for (k, v) in &ctx.lines {
        let _ = writeln!(out, "{k}: {v}");
    }
    out
}

/// The table and the machine as markdown.
pub fn markdown(rows: &[Row], ctx: &Context) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", HEADER.join(" | "));
    let _ = writeln!(out, "|{}", " --- |".repeat(HEADER.len()));
    for r in rows {
        let cells = r.cells().map(|c| c.replace('|', "\\|"));
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
    for (k, v) in &ctx.lines {
        let _ = writeln!(out, "- {k}: {v}");
    }
    out
}

/// The "where the time goes" pieces as aligned text.
pub fn breakdown_text(pieces: &[(String, f64)]) -> String {
    let width = pieces.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let mut out = String::from("where the time goes (each piece alone, median seconds):\n");
    for (label, secs) in pieces {
        let _ = writeln!(out, "  {label:<width$}  {secs:>7.2}");
    }
    out
}

/// Writes the markdown report (and the breakdown, when there is one) to `path`.
pub fn write_markdown(
    path: &Path,
    rows: &[Row],
    pieces: &[(String, f64)],
    ctx: &Context,
) -> std::io::Result<()> {
    let mut text = markdown(rows, ctx);
    if !pieces.is_empty() {
        text.push_str("\n| piece, alone | seconds |\n| --- | --- |\n");
        for (label, secs) in pieces {
            let _ = writeln!(text, "| {} | {secs:.2} |", label.replace('|', "\\|"));
        }
    }
    fs::write(path, text)
}

/// Our CPU time `cpu` and the baseline's `base_cpu` (user + system), and what ours bounds: even
/// with all `cores` busy every moment, a build that needs `cpu` seconds of CPU cannot end
/// sooner than `cpu / cores`, which against the baseline's wall time `base_wall` is the lowest
/// ratio the row can show on this machine with this much work to do.
pub fn cpu_bound(cpu: f64, base_cpu: f64, base_wall: f64, cores: usize) -> String {
    let least = cpu / cores as f64;
    format!(
        "ours {cpu:.2} s, baseline {base_cpu:.2} s (user + system); on {cores} cores ours cannot \
         take less than {least:.2} s, {:.3} of the baseline's {base_wall:.2} s",
        least / base_wall
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_bound_is_cpu_time_over_the_cores_against_the_baselines_wall_time() {
        assert_eq!(
            cpu_bound(5.9, 4.92, 2.87, 2),
            "ours 5.90 s, baseline 4.92 s (user + system); on 2 cores ours cannot take less \
             than 2.95 s, 1.028 of the baseline's 2.87 s"
        );
    }

    #[test]
    fn cpu_pressure_is_the_share_of_the_run_spent_waiting() {
        assert_eq!(
            cpu_pressure(Some(1_000_000), Some(1_500_000), 2.0),
            "25% of the run some task waited for a CPU (/proc/pressure/cpu)"
        );
        assert_eq!(
            cpu_pressure(None, Some(1), 1.0),
            "unknown (no /proc/pressure/cpu)"
        );
        assert_eq!(
            cpu_pressure(Some(5), Some(1), 1.0),
            "unknown (no /proc/pressure/cpu)"
        );
    }
}
