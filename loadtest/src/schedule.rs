//! The arrival schedule: an open-loop Poisson process of customers, each
//! with the plan of what its conversation will go through, all drawn from
//! one seeded generator. The same seed, rate, duration, entry points and
//! mix give the same arrivals, whatever the engine answers.

use std::time::Duration;

use rand::distributions::{Distribution, WeightedIndex};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::Exp;

use crate::config::EntryTraffic;

/// How conversations behave, as probabilities and mean times.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// Share of conversations whose first offer the agent lets lapse.
    pub lapse: f64,
    /// Share transferred to another queue of the channel (where there is one).
    pub transfer: f64,
    /// Share in which the agent invites a colleague (on channels that allow it).
    pub conference: f64,
    /// Share in which the customer answers the agent's message.
    pub customer_reply: f64,
    /// Mean time from an offer's arrival to the accept.
    pub think: Duration,
    /// Mean time from the agent's message to the end (or transfer, or invitation).
    pub talk: Duration,
    /// Mean time from the end to the wrap-up.
    pub wrap: Duration,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            lapse: 0.02,
            transfer: 0.05,
            conference: 0.03,
            customer_reply: 0.5,
            think: Duration::from_millis(100),
            talk: Duration::from_millis(200),
            wrap: Duration::from_millis(100),
        }
    }
}

/// How the agent who takes the conversation finishes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Ends it.
    End,
    /// Transfers it to another queue; whoever takes it there ends it.
    Transfer,
    /// Invites a colleague; then either the colleague leaves and the owner
    /// ends the conversation, or the owner ends the conference.
    Conference {
        /// Whether the colleague leaves first.
        invitee_leaves: bool,
    },
}

/// What one conversation will go through.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The first agent offered it lets the offer lapse.
    pub lapse: bool,
    /// How the owning agent finishes.
    pub ending: Ending,
    /// The customer answers the agent's message.
    pub customer_reply: bool,
    /// Offer to accept.
    pub think: Duration,
    /// Agent's message to the end.
    pub talk: Duration,
    /// End to wrap-up.
    pub wrap: Duration,
}

/// One customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// Its number in the run, from 0.
    pub index: u64,
    /// When it arrives, from the start of the run.
    pub at: Duration,
    /// The entry point it writes to (an index into the entry points).
    pub entry: usize,
    /// What its conversation will go through.
    pub plan: Plan,
}

/// The arrivals of a run, in time order; ends at the run's duration.
pub struct Schedule {
    rng: ChaCha8Rng,
    gaps: Exp<f64>,
    entries: WeightedIndex<f64>,
    traffic: Vec<(bool, bool, Duration)>,
    mix: Mix,
    duration: Duration,
    clock_s: f64,
    next_index: u64,
}

/// A schedule that cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The rate is not a positive number.
    #[error("the arrival rate must be above zero, not {0}")]
    Rate(f64),
    /// No entry point, or weights that are not positive.
    #[error("no entry point to send customers to")]
    NoEntryPoint,
}

impl Schedule {
    /// Customers arriving at `rate` per second on average for `duration`,
    /// spread over `entries` by their weights.
    pub fn new(
        seed: u64,
        rate: f64,
        duration: Duration,
        entries: &[EntryTraffic],
        mix: Mix,
    ) -> Result<Self, ScheduleError> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(ScheduleError::Rate(rate));
        }
        let gaps = Exp::new(rate).map_err(|_| ScheduleError::Rate(rate))?;
        let weights = WeightedIndex::new(entries.iter().map(|e| e.weight)).map_err(|_| ScheduleError::NoEntryPoint)?;
        let traffic = entries
            .iter()
            .map(|e| (e.transfer_to.is_some(), e.conference, Duration::from_millis(e.offer_timeout_ms)))
            .collect();
        Ok(Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            gaps,
            entries: weights,
            traffic,
            mix,
            duration,
            clock_s: 0.0,
            next_index: 0,
        })
    }

    /// A duration drawn from an exponential distribution with the given
    /// mean, capped at five means (and at `cap`), so no conversation stalls
    /// a run.
    fn draw(&mut self, mean: Duration, cap: Duration) -> Duration {
        let mean_s = mean.as_secs_f64();
        if mean_s <= 0.0 {
            return Duration::ZERO;
        }
        let sample = -mean_s * (1.0 - self.rng.gen::<f64>()).ln();
        Duration::from_secs_f64(sample.min(mean_s * 5.0)).min(cap)
    }

    fn plan(&mut self, entry: usize) -> Plan {
        let (can_transfer, can_conference, offer_timeout) = self.traffic[entry];
        let mix = self.mix.clone();
        let lapse = self.rng.gen_bool(mix.lapse.clamp(0.0, 1.0));
        let ending_draw: f64 = self.rng.gen();
        let ending = if ending_draw < mix.transfer && can_transfer {
            Ending::Transfer
        } else if ending_draw >= mix.transfer && ending_draw < mix.transfer + mix.conference && can_conference {
            Ending::Conference { invitee_leaves: self.rng.gen_bool(0.5) }
        } else {
            Ending::End
        };
        let customer_reply = self.rng.gen_bool(mix.customer_reply.clamp(0.0, 1.0));
        // An accept must land well before the offer lapses.
        let think = self.draw(mix.think, offer_timeout / 3);
        let talk = self.draw(mix.talk, Duration::from_secs(60));
        let wrap = self.draw(mix.wrap, Duration::from_secs(60));
        Plan { lapse, ending, customer_reply, think, talk, wrap }
    }
}

impl Iterator for Schedule {
    type Item = Arrival;

    fn next(&mut self) -> Option<Arrival> {
        self.clock_s += self.gaps.sample(&mut self.rng);
        let at = Duration::from_secs_f64(self.clock_s);
        if at >= self.duration {
            return None;
        }
        let entry = self.entries.sample(&mut self.rng);
        let plan = self.plan(entry);
        let index = self.next_index;
        self.next_index += 1;
        Some(Arrival { index, at, entry, plan })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigSpec, Roster};

    fn entries() -> Vec<EntryTraffic> {
        Roster::generated(&ConfigSpec::default()).entries
    }

    fn arrivals(seed: u64, rate: f64, seconds: u64) -> Vec<Arrival> {
        Schedule::new(seed, rate, Duration::from_secs(seconds), &entries(), Mix::default()).unwrap().collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let a = arrivals(7, 500.0, 4);
        let b = arrivals(7, 500.0, 4);
        assert_eq!(a, b);
        let c = arrivals(8, 500.0, 4);
        assert_ne!(a, c);
    }

    #[test]
    fn arrivals_are_ordered_within_the_duration_at_the_rate() {
        let all = arrivals(1, 1_000.0, 20);
        assert!(all.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(all.iter().all(|a| a.at < Duration::from_secs(20)));
        assert!(all.iter().enumerate().all(|(i, a)| a.index == i as u64));
        // 20,000 expected; a Poisson count's standard deviation is ~141.
        assert!((19_400..=20_600).contains(&all.len()), "{}", all.len());
        // Inter-arrival gaps of a Poisson process: mean 1 ms, and as many
        // shorter than the mean as an exponential has (1 - 1/e = 63 %).
        let gaps: Vec<f64> = all.windows(2).map(|w| (w[1].at - w[0].at).as_secs_f64()).collect();
        let short = gaps.iter().filter(|g| **g < 0.001).count() as f64 / gaps.len() as f64;
        assert!((0.60..0.66).contains(&short), "{short}");
    }

    #[test]
    fn the_mix_is_honoured_and_respects_the_channels() {
        let entries = entries();
        let all = arrivals(3, 2_000.0, 10);
        let n = all.len() as f64;
        let share = |f: &dyn Fn(&Arrival) -> bool| all.iter().filter(|a| f(a)).count() as f64 / n;
        let lapse = share(&|a| a.plan.lapse);
        assert!((0.01..0.03).contains(&lapse), "{lapse}");
        let chat = share(&|a| entries[a.entry].channel == "webchat");
        assert!((0.57..0.63).contains(&chat), "{chat}");
        let email_conferences = all
            .iter()
            .filter(|a| entries[a.entry].channel == "email")
            .filter(|a| matches!(a.plan.ending, Ending::Conference { .. }))
            .count();
        assert_eq!(email_conferences, 0, "email has no conferences");
        assert!(share(&|a| a.plan.ending == Ending::Transfer) > 0.03);
        assert!(share(&|a| matches!(a.plan.ending, Ending::Conference { .. })) > 0.015);
        let cap = Duration::from_millis(1_000);
        assert!(all.iter().all(|a| a.plan.think <= cap), "accepts land well before the 3 s offer timeout");
        let mean_think = all.iter().map(|a| a.plan.think.as_secs_f64()).sum::<f64>() / n;
        assert!((0.09..0.105).contains(&mean_think), "{mean_think}");
    }

    #[test]
    fn a_schedule_needs_a_rate_and_an_entry_point() {
        let none: Vec<EntryTraffic> = Vec::new();
        assert!(matches!(
            Schedule::new(1, 0.0, Duration::from_secs(1), &entries(), Mix::default()),
            Err(ScheduleError::Rate(_))
        ));
        assert!(matches!(
            Schedule::new(1, 10.0, Duration::from_secs(1), &none, Mix::default()),
            Err(ScheduleError::NoEntryPoint)
        ));
    }
}
