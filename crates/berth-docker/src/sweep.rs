//! Removing containers nobody uses any more: those of this deployment whose run is provably
//! dead, those that exited, and at the end everything of this run. Never a container of another
//! deployment, never one that a live berth may use.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{ContainerStateStatusEnum, ContainerSummaryStateEnum};
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};

use crate::engine::{Engine, LABEL_MANAGED_BY, MANAGED_BY};
use crate::error::{DockerError, is_not_found, is_transport_error};
use crate::liveness::{ContainerFact, Life, container_to_ask, read_stat, run_life};
use crate::owner::{LABEL_DEPLOYMENT, Owner, Run};

/// What a sweep may remove, besides the containers of provably dead runs of its deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// While this run serves (at start-up, and when the engine answers again): this run's own
    /// containers only once they have exited, since an instance may be between create and start.
    Running,
    /// After every backend of this run stopped: everything of this run too.
    Final,
}

/// Why a container goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    /// It belongs to this run, which is done with it.
    Ours,
    /// Its berth is provably gone.
    DeadRun,
    /// It has exited, and no live berth is known to use it.
    Exited,
}

/// Whether a container of this deployment goes: `theirs` is the run its labels record (`None`:
/// not a run's labels), `exited` whether it stopped running, `life` what is known of its run.
///
/// A container of another live run stays even when it exited: its berth removes it.
pub(crate) fn verdict(sweep: Sweep, mine: &Run, theirs: Option<&Run>, exited: bool, life: Life) -> Option<Removal> {
    match theirs {
        Some(theirs) if theirs.id == mine.id => match sweep {
            Sweep::Final => Some(Removal::Ours),
            Sweep::Running => exited.then_some(Removal::Ours),
        },
        Some(_) => match life {
            Life::Dead => Some(Removal::DeadRun),
            Life::Alive => None,
            Life::Unknown => exited.then_some(Removal::Exited),
        },
        None => exited.then_some(Removal::Exited),
    }
}

impl Engine {
    /// Removes the containers of `owner`'s deployment that nobody uses any more (see [`Sweep`]);
    /// returns how many. Other deployments' containers, and those of runs that live or may
    /// live, are left alone.
    pub async fn sweep(&self, owner: &Owner, sweep: Sweep) -> Result<usize, DockerError> {
        let docker = self.docker()?;
        let filters = HashMap::from([(
            "label",
            vec![format!("{LABEL_MANAGED_BY}={MANAGED_BY}"), format!("{LABEL_DEPLOYMENT}={}", owner.deployment())],
        )]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let found = docker.list_containers(Some(options)).await?;
        let mut lives: HashMap<String, Life> = HashMap::new();
        let mut removed = 0;
        for summary in found {
            let Some(id) = summary.id else { continue };
            let labels = summary.labels.unwrap_or_default();
            let exited =
                matches!(summary.state, Some(ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::DEAD));
            let theirs = Run::from_labels(&labels);
            let life = match &theirs {
                None => Life::Unknown,
                Some(theirs) => match lives.get(&theirs.id) {
                    Some(life) => *life,
                    None => {
                        let life = life_of(&docker, theirs, owner.run()).await?;
                        lives.insert(theirs.id.clone(), life);
                        life
                    }
                },
            };
            let Some(why) = verdict(sweep, owner.run(), theirs.as_ref(), exited, life) else { continue };
            let name = summary.names.and_then(|n| n.into_iter().next()).unwrap_or_default();
            let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
            match docker.remove_container(&id, Some(options)).await {
                Ok(()) => {
                    tracing::info!(container = %name, reason = ?why, "removed a container nobody uses");
                    removed += 1;
                }
                // Removed meanwhile (by its own berth or another sweep): not ours to count.
                Err(error) if is_not_found(&error) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(removed)
    }
}

/// Whether `theirs` lives, asking the engine about its berth's container when `/proc` cannot
/// tell.
async fn life_of(docker: &Docker, theirs: &Run, mine: &Run) -> Result<Life, DockerError> {
    let fact = match container_to_ask(theirs, mine) {
        None => None,
        Some(container) => match docker.inspect_container(container, None).await {
            Ok(inspected) => {
                let status = inspected.state.and_then(|state| state.status);
                Some(match status {
                    Some(
                        ContainerStateStatusEnum::RUNNING
                        | ContainerStateStatusEnum::PAUSED
                        | ContainerStateStatusEnum::RESTARTING,
                    ) => ContainerFact::Running,
                    Some(
                        ContainerStateStatusEnum::EXITED
                        | ContainerStateStatusEnum::DEAD
                        | ContainerStateStatusEnum::CREATED,
                    ) => ContainerFact::Stopped,
                    // Removing, or a state this version does not know: no clear answer.
                    _ => return Ok(Life::Unknown),
                })
            }
            Err(error) if is_not_found(&error) => Some(ContainerFact::Gone),
            Err(error) if !is_transport_error(&error) => None,
            Err(error) => return Err(error.into()),
        },
    };
    Ok(run_life(theirs, mine, &read_stat, fact))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_removes_only_what_nobody_uses() {
        let mine = Run { id: "me".to_owned(), container: None, process: None };
        let other = Run { id: "other".to_owned(), container: None, process: None };
        use Life::*;
        use Sweep::*;
        let ours = Some(Removal::Ours);
        let table = [
            // This run's own containers: exited ones at any time, the rest only at the end.
            (Running, Some(&mine), false, Alive, None),
            (Running, Some(&mine), true, Alive, ours),
            (Final, Some(&mine), false, Alive, ours),
            (Final, Some(&mine), true, Alive, ours),
            // Another run's: a live one's never, even exited; a dead one's always.
            (Running, Some(&other), false, Alive, None),
            (Running, Some(&other), true, Alive, None),
            (Final, Some(&other), false, Alive, None),
            (Final, Some(&other), true, Alive, None),
            (Running, Some(&other), false, Dead, Some(Removal::DeadRun)),
            (Final, Some(&other), true, Dead, Some(Removal::DeadRun)),
            // A run that cannot be looked at (another machine, an older reboot): once exited.
            (Running, Some(&other), false, Unknown, None),
            (Final, Some(&other), false, Unknown, None),
            (Running, Some(&other), true, Unknown, Some(Removal::Exited)),
            (Final, Some(&other), true, Unknown, Some(Removal::Exited)),
            // Labels that are not a run's: once exited.
            (Final, None, false, Unknown, None),
            (Running, None, true, Unknown, Some(Removal::Exited)),
        ];
        for (sweep, theirs, exited, life, expected) in table {
            assert_eq!(
                verdict(sweep, &mine, theirs, exited, life),
                expected,
                "{sweep:?} {:?} exited={exited} {life:?}",
                theirs.map(|r| &r.id)
            );
        }
    }
}
