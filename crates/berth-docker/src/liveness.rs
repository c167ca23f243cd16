//! Whether a recorded run of berth still lives, from what `/proc` and the engine say.
//!
//! "Dead" must be proven: a run whose berth cannot be looked at from here (another machine,
//! another container the engine does not know) is [`Life::Unknown`], never dead.

use crate::owner::{ProcessMark, Run};

/// What is known of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Life {
    /// Its berth runs.
    Alive,
    /// Its berth is provably gone.
    Dead,
    /// Its berth cannot be looked at from here.
    Unknown,
}

/// What the engine says of the container a run's berth ran in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContainerFact {
    /// The engine does not know it (any more).
    Gone,
    /// It exists but does not run (exited, dead, created).
    Stopped,
    /// It runs (or is paused, or restarting).
    Running,
}

/// The container to ask the engine about to settle `theirs`, if any: only when `/proc` cannot
/// tell (another pid namespace) and the run recorded one.
pub(crate) fn container_to_ask<'a>(theirs: &'a Run, mine: &Run) -> Option<&'a str> {
    if same_namespace(theirs, mine) { None } else { theirs.container.as_deref() }
}

/// Whether the run `theirs` lives, seen from the run `mine`. `stat` reads `/proc/<pid>/stat`;
/// `container` is what the engine said of [`container_to_ask`]'s answer (`None`: not asked, or
/// no clear answer).
pub(crate) fn run_life(
    theirs: &Run,
    mine: &Run,
    stat: &dyn Fn(u32) -> Option<String>,
    container: Option<ContainerFact>,
) -> Life {
    if theirs.id == mine.id {
        return Life::Alive;
    }
    if let (Some(process), true) = (&theirs.process, same_namespace(theirs, mine)) {
        return process_life(process, stat);
    }
    match (container, &theirs.container) {
        (Some(ContainerFact::Gone | ContainerFact::Stopped), _) => Life::Dead,
        // Our own container, but their berth ran in another pid namespace of it: the container
        // was restarted since (each start makes a new namespace), which ended their process.
        (Some(ContainerFact::Running), Some(theirs_container))
            if mine.container.as_ref() == Some(theirs_container)
                && theirs.process.is_some()
                && mine.process.is_some() =>
        {
            Life::Dead
        }
        (Some(ContainerFact::Running), _) => Life::Alive,
        (None, _) => Life::Unknown,
    }
}

/// Whether both runs' pids are comparable (the same pid namespace of the same boot).
fn same_namespace(theirs: &Run, mine: &Run) -> bool {
    matches!((&theirs.process, &mine.process), (Some(a), Some(b)) if a.namespace == b.namespace)
}

/// Whether `process`, of this pid namespace, lives: its pid exists, is not a zombie, and started
/// when it did (else the pid was reused by another process).
fn process_life(process: &ProcessMark, stat: &dyn Fn(u32) -> Option<String>) -> Life {
    match stat(process.pid).as_deref().and_then(parse_stat) {
        None => Life::Dead,
        Some((state, _)) if state == 'Z' || state == 'X' => Life::Dead,
        Some((_, start)) if start != process.start => Life::Dead,
        Some(_) => Life::Alive,
    }
}

/// The state letter and start time (field 22) of a `/proc/<pid>/stat` line. The command name
/// (field 2) is in parentheses and may hold spaces and parentheses itself, so the fields are
/// counted after its last `)`.
pub(crate) fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 4 to 21 come between the state (3) and the start time (22).
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Reads `/proc/<pid>/stat`.
pub(crate) fn read_stat(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stat line of a process `pid` in `state`, started at `start`, named to trip naive parsers.
    fn stat_line(pid: u32, state: char, start: u64) -> String {
        format!("{pid} (be rth) (x)) {state} 1 {pid} {pid} 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 {start} 1000 10")
    }

    fn mark(namespace: &str, pid: u32, start: u64) -> Option<ProcessMark> {
        Some(ProcessMark { namespace: namespace.to_owned(), pid, start })
    }

    fn run(id: &str, container: Option<&str>, process: Option<ProcessMark>) -> Run {
        Run { id: id.to_owned(), container: container.map(str::to_owned), process }
    }

    #[test]
    fn stat_lines_are_read_after_the_command_name() {
        assert_eq!(parse_stat(&stat_line(42, 'S', 123_456)), Some(('S', 123_456)));
        assert_eq!(parse_stat("42 (short) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
        let own = read_stat(std::process::id()).unwrap();
        assert!(parse_stat(&own).is_some(), "{own}");
    }

    #[test]
    fn runs_are_alive_dead_or_unknown() {
        // The machine: pid 10 started at 100 runs; pid 11 is a zombie; pid 12 runs but started
        // at 200 (a reused pid); no other pid exists.
        let stat = |pid: u32| match pid {
            10 => Some(stat_line(10, 'S', 100)),
            11 => Some(stat_line(11, 'Z', 100)),
            12 => Some(stat_line(12, 'R', 200)),
            _ => None,
        };
        let here = "boot-a/pid:[1]";
        let mine = run("me", None, mark(here, 1, 1));
        let in_container = run("me", Some("c-mine"), mark("boot-a/pid:[9]", 1, 1));
        use ContainerFact::*;
        use Life::*;
        let table: [(&str, Run, &Run, Option<ContainerFact>, Life); 15] = [
            ("this very run", run("me", None, None), &mine, None, Alive),
            ("same namespace, pid runs", run("r", None, mark(here, 10, 100)), &mine, None, Alive),
            ("same namespace, pid gone", run("r", None, mark(here, 99, 100)), &mine, None, Dead),
            ("same namespace, zombie", run("r", None, mark(here, 11, 100)), &mine, None, Dead),
            ("same namespace, pid reused", run("r", None, mark(here, 12, 100)), &mine, None, Dead),
            // /proc answers even when the engine says the container runs: the process decides.
            ("same namespace beats container", run("r", Some("c"), mark(here, 99, 100)), &mine, Some(Running), Dead),
            ("another boot, no container", run("r", None, mark("boot-b/pid:[1]", 10, 100)), &mine, None, Unknown),
            ("another namespace, no container", run("r", None, mark("boot-a/pid:[2]", 10, 100)), &mine, None, Unknown),
            ("nothing recorded", run("r", None, None), &mine, None, Unknown),
            ("its container is gone", run("r", Some("c"), mark("boot-a/pid:[2]", 10, 100)), &mine, Some(Gone), Dead),
            ("its container stopped", run("r", Some("c"), None), &mine, Some(Stopped), Dead),
            ("its container runs", run("r", Some("c"), mark("boot-a/pid:[2]", 10, 100)), &mine, Some(Running), Alive),
            ("engine had no answer", run("r", Some("c"), None), &mine, None, Unknown),
            (
                "our container, restarted since",
                run("r", Some("c-mine"), mark("boot-a/pid:[8]", 1, 1)),
                &in_container,
                Some(Running),
                Dead,
            ),
            ("our container, no marks to compare", run("r", Some("c-mine"), None), &in_container, Some(Running), Alive),
        ];
        for (what, theirs, mine, fact, expected) in table {
            assert_eq!(run_life(&theirs, mine, &stat, fact), expected, "{what}");
        }
    }

    #[test]
    fn the_engine_is_asked_only_when_proc_cannot_tell() {
        let mine = run("me", None, mark("a", 1, 1));
        assert_eq!(container_to_ask(&run("r", Some("c"), mark("a", 2, 2)), &mine), None);
        assert_eq!(container_to_ask(&run("r", Some("c"), mark("b", 2, 2)), &mine), Some("c"));
        assert_eq!(container_to_ask(&run("r", Some("c"), None), &mine), Some("c"));
        assert_eq!(container_to_ask(&run("r", None, mark("b", 2, 2)), &mine), None);
    }
}
