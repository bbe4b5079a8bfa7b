//! Which alerts pass: deduplication per kit, event and revision, `recovered` only after a
//! `failed`, and the bookkeeping of drifts waiting out `driftAlertAfter`. Pure state; the
//! [`Alerter`](super::Alerter) holds it under a lock and owns the clock.

use super::Event;
use std::collections::HashMap;
use tokio::task::AbortHandle;

/// The alerting state of every kit seen.
#[derive(Debug, Default)]
pub(super) struct Gate {
    kits: HashMap<String, KitState>,
    /// Numbers drift episodes, so a timer from an episode that ended cannot fire for the next.
    episodes: u64,
}

#[derive(Debug, Default)]
struct KitState {
    /// Per event (by [`Event::index`]), the revision of the last alert sent. One entry per
    /// event keeps the state bounded; a revision that comes back later (a revert) is alerted
    /// again, which is what a reader of the alerts expects.
    last: [Option<String>; Event::ALL.len()],
    /// A `failed` was sent and no `recovered` since.
    failing: bool,
    /// The drift in progress.
    drift: Option<Drift>,
}

#[derive(Debug)]
struct Drift {
    episode: u64,
    /// The latest revision and message the drift code gave.
    revision: String,
    message: String,
    /// The revision a `drifted` alert went out for in this episode.
    alerted: Option<String>,
    /// The pending delay, cancelled when the drift ends.
    timer: Option<AbortHandle>,
}

/// What [`Gate::drift_started`] asks of the caller.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum DriftStep {
    /// Nothing: the clock of this episode already runs, or its alert went out.
    Wait,
    /// Start a timer for this episode, then give it to [`Gate::set_timer`].
    StartTimer(u64),
    /// Send `drifted` now (for the revision given to `drift_started`).
    SendNow,
}

impl Gate {
    /// Whether an alert of `event` for `kit` at `revision` should be sent; records it if so.
    ///
    /// The same (kit, event, revision) passes once, whatever its message (a `failed` with a
    /// new reason is the same failure). `recovered` passes only while the kit is failing, and
    /// ends that failure: a later `failed`, even at the same revision, is a new one.
    pub(super) fn admit(&mut self, kit: &str, event: Event, revision: &str) -> bool {
        let state = self.kits.entry(kit.to_owned()).or_default();
        if event == Event::Recovered {
            if !state.failing {
                return false;
            }
            state.failing = false;
            state.last[Event::Failed.index()] = None;
            state.last[event.index()] = Some(revision.to_owned());
            return true;
        }
        let last = &mut state.last[event.index()];
        if last.as_deref() == Some(revision) {
            return false;
        }
        *last = Some(revision.to_owned());
        if event == Event::Failed {
            state.failing = true;
        }
        true
    }

    /// The drift code saw `kit` diverge at `revision`. Repeated calls during one drift keep
    /// its first start (the delay is measured from there) and update what the alert will say.
    pub(super) fn drift_started(
        &mut self,
        kit: &str,
        revision: &str,
        message: &str,
        at_once: bool,
    ) -> DriftStep {
        let state = self.kits.entry(kit.to_owned()).or_default();
        if let Some(drift) = &mut state.drift {
            revision.clone_into(&mut drift.revision);
            message.clone_into(&mut drift.message);
            // The drift already outlasted the delay: a new revision drifting too is news.
            return match &drift.alerted {
                Some(sent) if sent != revision => {
                    drift.alerted = Some(revision.to_owned());
                    DriftStep::SendNow
                }
                _ => DriftStep::Wait,
            };
        }
        self.episodes += 1;
        let episode = self.episodes;
        state.drift = Some(Drift {
            episode,
            revision: revision.to_owned(),
            message: message.to_owned(),
            alerted: at_once.then(|| revision.to_owned()),
            timer: None,
        });
        if at_once {
            DriftStep::SendNow
        } else {
            DriftStep::StartTimer(episode)
        }
    }

    /// Keeps the timer of `episode` so that the end of the drift can cancel it.
    pub(super) fn set_timer(&mut self, kit: &str, episode: u64, timer: AbortHandle) {
        match self.drift_mut(kit, episode) {
            Some(drift) => drift.timer = Some(timer),
            None => timer.abort(),
        }
    }

    /// The delay of `episode` is over: the revision and message to alert with, if that drift
    /// still lasts.
    pub(super) fn drift_due(&mut self, kit: &str, episode: u64) -> Option<(String, String)> {
        let drift = self.drift_mut(kit, episode)?;
        drift.timer = None;
        drift.alerted = Some(drift.revision.clone());
        Some((drift.revision.clone(), drift.message.clone()))
    }

    /// The drift of `kit` is over: its timer stops, and a later drift is a new episode that
    /// alerts again, even at the same revision.
    pub(super) fn drift_ended(&mut self, kit: &str) {
        let Some(state) = self.kits.get_mut(kit) else {
            return;
        };
        if let Some(drift) = state.drift.take() {
            if let Some(timer) = drift.timer {
                timer.abort();
            }
            if drift.alerted.is_some() {
                state.last[Event::Drifted.index()] = None;
            }
        }
    }

    /// Forgets `kit` (removed from Git), stopping its drift timer.
    pub(super) fn forget(&mut self, kit: &str) {
        self.drift_ended(kit);
        self.kits.remove(kit);
    }

    /// Stops every drift timer (at shutdown).
    pub(super) fn stop_timers(&mut self) {
        for state in self.kits.values_mut() {
            if let Some(timer) = state.drift.as_mut().and_then(|d| d.timer.take()) {
                timer.abort();
            }
        }
    }

    fn drift_mut(&mut self, kit: &str, episode: u64) -> Option<&mut Drift> {
        self.kits
            .get_mut(kit)?
            .drift
            .as_mut()
            .filter(|d| d.episode == episode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Event::*;

    /// A (kit, event, revision) step.
    type Step<'a> = (&'a str, Event, &'a str);

    /// Runs steps through one gate; returns which passed.
    fn run(steps: &[Step]) -> Vec<bool> {
        let mut gate = Gate::default();
        steps
            .iter()
            .map(|(kit, event, revision)| gate.admit(kit, *event, revision))
            .collect()
    }

    #[test]
    fn dedupe_cases() {
        let cases: &[(&str, &[Step], &[bool])] = &[
            (
                "each event of a revision once",
                &[
                    ("web", RevisionDetected, "a"),
                    ("web", RevisionDetected, "a"),
                    ("web", Applied, "a"),
                    ("web", Applied, "a"),
                    ("web", Converged, "a"),
                    ("web", Converged, "a"),
                ],
                &[true, false, true, false, true, false],
            ),
            (
                "kits are apart",
                &[("web", Applied, "a"), ("db", Applied, "a")],
                &[true, true],
            ),
            (
                "a new revision passes, and so does a revert",
                &[
                    ("web", Applied, "a"),
                    ("web", Applied, "b"),
                    ("web", Applied, "a"),
                ],
                &[true, true, true],
            ),
            (
                "recovered needs a failed first",
                &[
                    ("web", Recovered, "a"),
                    ("web", Failed, "a"),
                    ("web", Recovered, "a"),
                ],
                &[false, true, true],
            ),
            (
                "recovered once per failure",
                &[
                    ("web", Failed, "a"),
                    ("web", Recovered, "a"),
                    ("web", Recovered, "a"),
                    ("web", Recovered, "b"),
                ],
                &[true, true, false, false],
            ),
            (
                "the same failure is sent once; a failure after recovering is new",
                &[
                    ("web", Failed, "a"),
                    ("web", Failed, "a"),
                    ("web", Recovered, "a"),
                    ("web", Failed, "a"),
                ],
                &[true, false, true, true],
            ),
            (
                "a failure at a new revision is new; one recovered ends both",
                &[
                    ("web", Failed, "a"),
                    ("web", Failed, "b"),
                    ("web", Recovered, "b"),
                    ("web", Recovered, "b"),
                ],
                &[true, true, true, false],
            ),
            (
                "another kit's failure does not let this kit recover",
                &[("db", Failed, "a"), ("web", Recovered, "a")],
                &[true, false],
            ),
        ];
        for (name, steps, want) in cases {
            assert_eq!(&run(steps), want, "{name}");
        }
    }

    #[test]
    fn a_drift_waits_once_and_a_stale_timer_does_nothing() {
        let mut gate = Gate::default();
        let DriftStep::StartTimer(first) = gate.drift_started("web", "a", "port changed", false) else {
            panic!("a new drift starts a timer");
        };
        assert_eq!(
            gate.drift_started("web", "a", "port changed again", false),
            DriftStep::Wait
        );
        assert_eq!(
            gate.drift_due("web", first),
            Some(("a".into(), "port changed again".into()))
        );
        gate.drift_ended("web");
        assert_eq!(gate.drift_due("web", first), None, "the episode ended");
        let DriftStep::StartTimer(second) = gate.drift_started("web", "a", "again", false) else {
            panic!("a new episode");
        };
        assert_ne!(first, second);
        assert_eq!(gate.drift_due("web", first), None, "an old timer is ignored");
    }

    #[test]
    fn a_drift_alerted_at_once_alerts_again_for_a_new_revision_only() {
        let mut gate = Gate::default();
        assert_eq!(gate.drift_started("web", "a", "m", true), DriftStep::SendNow);
        assert_eq!(gate.drift_started("web", "a", "m", true), DriftStep::Wait);
        assert_eq!(gate.drift_started("web", "b", "m", true), DriftStep::SendNow);
    }

    #[test]
    fn the_end_of_a_drift_resets_the_drifted_dedupe() {
        let mut gate = Gate::default();
        assert_eq!(gate.drift_started("web", "a", "m", true), DriftStep::SendNow);
        assert!(gate.admit("web", Drifted, "a"));
        gate.drift_ended("web");
        assert_eq!(gate.drift_started("web", "a", "m", true), DriftStep::SendNow);
        assert!(
            gate.admit("web", Drifted, "a"),
            "a new episode at the same revision"
        );
    }
}
