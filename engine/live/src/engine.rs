//! The engine handle: start (recover, configure, expire what fell due while
//! down), submit, subscribe, read states, shut down.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use actix::{Actor, Addr, Arbiter};
use switchboard_domain::{Command, DomainState, Envelope};
use switchboard_journal::{Appender, EmbeddedJournal, GroupCommitter, JournalError};
use tokio::sync::broadcast;

use crate::error::{EngineError, Outage, SubmitError};
use crate::recovery::{recover, Recovered, RecoveryReport};
use crate::shard::{
    is_configuration, DomainEntry, Mode, Pending, ShardActor, Snapshots, StartTimers, States, Stop, Submit,
};
use crate::snapshot::{self, ToSnapshots};
use crate::timer::{run_timers, Armed};
use crate::writer::{self, Outlets};
use crate::Published;

/// How to run an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The journal's directory (created if missing; locked while running).
    pub data_dir: PathBuf,
    /// Shards, one thread each; a routing domain lives in exactly one.
    pub shards: usize,
    /// Commands a shard's mailbox holds before submitters wait.
    pub mailbox_capacity: usize,
    /// Per routing domain, how many recent command ids are remembered with
    /// their events, so that a retry within that many later commands of
    /// the domain is answered with the original events instead of being
    /// executed again. Refilled from the log at start.
    pub idempotency_window: usize,
    /// Appends (messages of [`Published`] events) a [`Engine::subscribe`]
    /// receiver may fall behind by before it misses some (and is told so by
    /// `RecvError::Lagged`).
    pub subscriber_capacity: usize,
    /// A shard snapshots its domains' states (into `<data_dir>/snapshots/`)
    /// after every this many events it decides, if the journal has grown
    /// since its last snapshot by at least as many bytes as that snapshot
    /// held ([`crate::SnapshotCadence`]), and once more at shutdown, so that
    /// a start folds only the journal after the snapshots. 0 disables
    /// snapshots: none are written, and a start folds the whole journal,
    /// ignoring any present.
    pub snapshot_every: u64,
    /// How long a shard's writer waits before its next append when it finds
    /// decisions already queued as it finishes one: the shard decides faster
    /// than the disk syncs, so waiting lets one fsync carry more of them. A
    /// decision arriving at an idle writer is appended at once. Zero never
    /// waits.
    pub commit_delay: Duration,
}

/// [`EngineOptions::commit_delay`]'s default. At 1000 lifecycles/s it cut
/// the journal committer's CPU by a third and the engine's CPU per lifecycle
/// by about 12 % (docs/performance.md, "Eighth round").
pub const DEFAULT_COMMIT_DELAY: Duration = Duration::from_micros(500);

impl EngineOptions {
    /// Defaults for a journal in `data_dir`: 2 shards, mailboxes of 1024,
    /// 1024 remembered commands per domain, subscribers 2048 appends behind,
    /// a snapshot every 50 000 events of a shard, a commit delay of 500 µs.
    pub fn new(data_dir: impl Into<PathBuf>) -> EngineOptions {
        EngineOptions {
            data_dir: data_dir.into(),
            shards: 2,
            mailbox_capacity: 1024,
            idempotency_window: 1024,
            subscriber_capacity: 2048,
            snapshot_every: 50_000,
            commit_delay: DEFAULT_COMMIT_DELAY,
        }
    }
}

/// The running engine: a cheap, cloneable handle.
///
/// Must be started and used inside an actix `System` (actix-web provides
/// one). Every event it reports has been made durable in the journal first.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<Shard>,
    /// Hosts every shard's timer task, away from the busy shard threads.
    timer_arbiter: Arbiter,
    subscribers: broadcast::Sender<Published>,
    committer: Mutex<Option<GroupCommitter<EmbeddedJournal>>>,
    writers: Mutex<Vec<JoinHandle<()>>>,
    /// The snapshot thread and the way to tell it to finish; `None` when
    /// snapshots are disabled or once shut down.
    snapshots: Mutex<Option<(mpsc::Sender<ToSnapshots>, JoinHandle<()>)>>,
    recovery: RecoveryReport,
    data_dir: PathBuf,
    accepting: AtomicBool,
    ready: AtomicBool,
}

struct Shard {
    addr: Addr<ShardActor>,
    arbiter: Arbiter,
    failed: Arc<OnceLock<JournalError>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Without a shutdown: let the threads end rather than outlive the engine.
        self.timer_arbiter.stop();
        for shard in &self.shards {
            shard.arbiter.stop();
        }
    }
}

/// The shard that owns `domain`: a hash that is the same in every process
/// and release (FNV-1a), unlike std's randomized hasher. Snapshot files rely
/// on it too: each holds the domains of one shard of a given count.
pub(crate) fn shard_of(domain: &str, shards: usize) -> usize {
    let hash = domain.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (hash % shards as u64) as usize
}

/// What every shard shares.
struct Shared<'a> {
    options: &'a EngineOptions,
    subscribers: broadcast::Sender<Published>,
    timer_arbiter: &'a Arbiter,
    durable_end: Arc<AtomicU64>,
    /// To the snapshot thread; `None` when snapshots are disabled.
    snapshots: Option<mpsc::Sender<ToSnapshots>>,
}

/// Starts shard `index` (its arbiter, actor, writer and timer task).
fn spawn_shard(
    index: usize,
    domains: BTreeMap<String, DomainEntry>,
    appender: Appender,
    shared: &Shared<'_>,
) -> (Shard, JoinHandle<()>) {
    let options = shared.options;
    let (jobs, job_queue) = mpsc::channel();
    let timers = Arc::new(Armed::default());
    let failed = Arc::new(OnceLock::new());
    let outlets = Outlets {
        appender,
        subscribers: shared.subscribers.clone(),
        timers: timers.clone(),
        failed: failed.clone(),
        durable_end: shared.durable_end.clone(),
        snapshots: shared.snapshots.clone().map(|sender| (index, sender)),
        commit_delay: options.commit_delay,
    };
    let writer = writer::spawn(index, job_queue, outlets);
    let snapshots = shared.snapshots.clone().map(|sender| Snapshots {
        shard: index,
        every: options.snapshot_every,
        sender,
        since: 0,
    });
    let actor = ShardActor::new(domains, options.idempotency_window, jobs, timers.clone(), failed.clone(), snapshots);
    let arbiter = Arbiter::new();
    let capacity = options.mailbox_capacity;
    let addr = ShardActor::start_in_arbiter(&arbiter.handle(), move |ctx| {
        ctx.set_mailbox_capacity(capacity);
        actor
    });
    shared.timer_arbiter.spawn(run_timers(timers, addr.clone().recipient()));
    (Shard { addr, arbiter, failed }, writer)
}

fn stopped<E>(_: E) -> SubmitError {
    SubmitError::Unavailable(Outage::Stopped)
}

async fn answer<T>(sent: Result<Pending<T>, actix::MailboxError>) -> Result<T, SubmitError> {
    sent.map_err(stopped)?.await.map_err(stopped)?
}

/// Reads the chosen states of one shard through `view` (see [`States`]).
async fn read_shard<T: Send + 'static>(
    shard: &actix::Addr<ShardActor>,
    domain: Option<String>,
    view: impl FnOnce(Vec<(&String, &DomainState)>) -> T + Send + 'static,
) -> Result<T, SubmitError> {
    let view: crate::shard::View = Box::new(move |chosen| Box::new(view(chosen)));
    let answered = answer(shard.send(States { domain, view }).await).await?;
    Ok(*answered.downcast::<T>().expect("a view answers with its own type"))
}

impl Engine {
    /// Opens the journal, rebuilds the states (from the newest valid
    /// snapshots and the journal after them, or from the whole journal; see
    /// [`recovery_report`](Self::recovery_report)), starts the shards, applies
    /// `configuration` (skipping commands that would change nothing, so a
    /// restart appends no duplicates), expires the offers and automatic
    /// wrap-ups that fell due while the engine was down, and arms the other
    /// timers. Refuses a journal it cannot explain, naming the offset.
    pub async fn start(options: EngineOptions, configuration: Vec<Command>) -> Result<Engine, EngineError> {
        if options.shards == 0 {
            return Err(EngineError::Options("shards must be at least 1"));
        }
        if options.mailbox_capacity == 0 || options.subscriber_capacity == 0 {
            return Err(EngineError::Options("mailbox_capacity and subscriber_capacity must be at least 1"));
        }
        if let Some(command) = configuration.iter().find(|c| !is_configuration(c)) {
            return Err(EngineError::NotConfiguration { command_id: command.command_id.clone() });
        }
        let (dir, window, shard_count) = (options.data_dir.clone(), options.idempotency_window, options.shards);
        let use_snapshots = options.snapshot_every > 0;
        let Recovered { journal, domains, report, covered } =
            tokio::task::spawn_blocking(move || recover(&dir, window, use_snapshots, shard_count))
                .await
                .map_err(|e| EngineError::Runtime(e.to_string()))??;
        let durable_end = Arc::new(AtomicU64::new(report.journal_end));
        let committer = GroupCommitter::new(journal);
        let (subscribers, _) = broadcast::channel(options.subscriber_capacity);
        let mut partitions: Vec<BTreeMap<String, DomainEntry>> = (0..options.shards).map(|_| BTreeMap::new()).collect();
        for (domain, entry) in domains {
            partitions[shard_of(&domain, options.shards)].insert(domain, entry);
        }
        // The snapshot thread's replicas start from the recovered states.
        let replicas = if use_snapshots { partitions.clone() } else { Vec::new() };
        let timer_arbiter = Arbiter::new();
        let (snapshot_sender, snapshot_queue) = mpsc::channel();
        let shared = Shared {
            options: &options,
            subscribers: subscribers.clone(),
            timer_arbiter: &timer_arbiter,
            durable_end: durable_end.clone(),
            snapshots: use_snapshots.then(|| snapshot_sender.clone()),
        };
        let (shards, writers): (Vec<Shard>, Vec<JoinHandle<()>>) = partitions
            .into_iter()
            .enumerate()
            .map(|(index, domains)| spawn_shard(index, domains, committer.appender(), &shared))
            .unzip();
        drop(shared);
        let snapshots = use_snapshots.then(|| {
            let settings = snapshot::Settings {
                data_dir: options.data_dir.clone(),
                shards: options.shards,
                every: options.snapshot_every,
                latest: covered,
                durable_end,
                replicas,
                window: options.idempotency_window,
            };
            let thread = snapshot::spawn(settings, snapshot_queue, shards.iter().map(|s| s.addr.clone()).collect());
            (snapshot_sender, thread)
        });
        let engine = Engine {
            inner: Arc::new(Inner {
                shards,
                timer_arbiter,
                subscribers,
                committer: Mutex::new(Some(committer)),
                writers: Mutex::new(writers),
                snapshots: Mutex::new(snapshots),
                recovery: report,
                data_dir: options.data_dir,
                accepting: AtomicBool::new(true),
                ready: AtomicBool::new(false),
            }),
        };
        for (command_id, result) in engine.route_all(configuration, Mode::Configuration).await {
            result.map_err(|source| EngineError::Configuration { command_id, source })?;
        }
        let now_ms = crate::now_ms();
        let mut overdue = Vec::new();
        for shard in &engine.inner.shards {
            let due = shard.addr.send(StartTimers { now_ms }).await.map_err(|e| EngineError::Runtime(e.to_string()))?;
            overdue.extend(due);
        }
        for (command_id, result) in engine.route_all(overdue, Mode::Normal).await {
            match result {
                Ok(_) => {}
                Err(SubmitError::Rejected(rejection)) => {
                    tracing::warn!(%command_id, %rejection, "start-up expiry refused");
                }
                Err(source) => return Err(EngineError::StartUp { command_id, source }),
            }
        }
        engine.inner.ready.store(true, Ordering::SeqCst);
        Ok(engine)
    }

    /// How this engine's start rebuilt the state: the snapshots it used or
    /// passed over, where its fold of the journal began, how many records
    /// it read.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    /// True once recovery, configuration and start-up expiries are done, and
    /// until shutdown or a journal failure.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst)
            && self.inner.accepting.load(Ordering::SeqCst)
            && self.inner.shards.iter().all(|shard| shard.failed.get().is_none())
    }

    /// Decides `command` in its domain's shard and returns its events once
    /// they are durable in the journal. An `at_ms` of 0 is stamped with the
    /// clock; any time is moved up to the domain's last event if earlier.
    /// A command id the domain has seen recently is answered with the
    /// original events, not executed again.
    pub async fn submit(&self, command: Command) -> Result<Vec<Arc<Envelope>>, SubmitError> {
        if !self.inner.accepting.load(Ordering::SeqCst) {
            return Err(SubmitError::Unavailable(Outage::Stopped));
        }
        self.route(command, Mode::Normal).await
    }

    async fn route(&self, command: Command, mode: Mode) -> Result<Vec<Arc<Envelope>>, SubmitError> {
        let shard = &self.inner.shards[shard_of(&command.domain, self.inner.shards.len())];
        Submit::hand_over(&shard.addr, command, mode).await.await.map_err(stopped)?
    }

    /// Decides `commands` in order, then waits for them all: their appends
    /// are grouped instead of costing an fsync each.
    async fn route_all(
        &self,
        commands: Vec<Command>,
        mode: Mode,
    ) -> Vec<(String, Result<Vec<Arc<Envelope>>, SubmitError>)> {
        let mut decided = Vec::new();
        for command in commands {
            let command_id = command.command_id.clone();
            let shard = &self.inner.shards[shard_of(&command.domain, self.inner.shards.len())];
            decided.push((command_id, Submit::hand_over(&shard.addr, command, mode).await));
        }
        let mut results = Vec::new();
        for (command_id, sent) in decided {
            results.push((command_id, sent.await.map_err(stopped).and_then(|answer| answer)));
        }
        results
    }

    /// Every durable event from now on, after its append, in journal order
    /// within each domain, one message per append.
    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.inner.subscribers.subscribe()
    }

    /// A copy of every domain's state, each as of a moment at which all it
    /// holds is durable: what a replay of the journal would give then (each
    /// shard is copied at its own moment; domains are independent).
    pub async fn states(&self) -> Result<BTreeMap<String, DomainState>, SubmitError> {
        Ok(self.read_all(|_, state| state.clone()).await?.into_iter().collect())
    }

    /// What `view` takes from each domain's state, by domain, as of a moment
    /// at which all each shard holds is durable. The view runs on the
    /// domains' shards, so only what it returns is copied (the metrics'
    /// gauges read every domain on every scrape).
    pub async fn read_all<T: Send + 'static>(
        &self,
        view: impl Fn(&str, &DomainState) -> T + Clone + Send + 'static,
    ) -> Result<Vec<(String, T)>, SubmitError> {
        let mut all = Vec::new();
        for shard in &self.inner.shards {
            let view = view.clone();
            let taken = move |chosen: Vec<(&String, &DomainState)>| {
                chosen.into_iter().map(|(domain, state)| (domain.clone(), view(domain, state))).collect::<Vec<_>>()
            };
            all.extend(read_shard(&shard.addr, None, taken).await?);
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }

    /// A copy of one domain's state (see [`states`](Self::states)), `None`
    /// if it has no events yet.
    pub async fn domain_state(&self, domain: &str) -> Result<Option<DomainState>, SubmitError> {
        self.read(domain, |state| state.cloned()).await
    }

    /// What `view` takes from one domain's state (`None` if it has no
    /// events yet), as of a moment at which all it holds is durable. The
    /// view runs on the domain's shard, so only what it returns is copied.
    pub async fn read<T: Send + 'static>(
        &self,
        domain: &str,
        view: impl FnOnce(Option<&DomainState>) -> T + Send + 'static,
    ) -> Result<T, SubmitError> {
        let shard = &self.inner.shards[shard_of(domain, self.inner.shards.len())];
        read_shard(&shard.addr, Some(domain.to_owned()), move |chosen| view(chosen.first().map(|(_, state)| *state)))
            .await
    }

    /// Stops accepting commands and timers, lets every shard finish writing
    /// what it decided (answering those callers), writes a last snapshot of
    /// each shard (unless disabled), and closes the journal, releasing its
    /// lock. Later calls do nothing. A snapshot that cannot be written is
    /// logged, not an error: the journal holds everything.
    pub async fn shutdown(&self) -> Result<(), EngineError> {
        if !self.inner.accepting.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        self.inner.ready.store(false, Ordering::SeqCst);
        self.inner.timer_arbiter.stop();
        for shard in &self.inner.shards {
            // Queued behind the commands already sent, which are decided first.
            let _ = shard.addr.send(Stop).await;
        }
        let writers = std::mem::take(&mut *self.inner.writers.lock().unwrap_or_else(PoisonError::into_inner));
        let committer = self.inner.committer.lock().unwrap_or_else(PoisonError::into_inner).take();
        let snapshots = self.inner.snapshots.lock().unwrap_or_else(PoisonError::into_inner).take();
        let dir = self.inner.data_dir.clone();
        let closed = tokio::task::spawn_blocking(move || {
            for writer in writers {
                let _ = writer.join();
            }
            // The writers have handed over the last snapshots (taken at Stop): write them, then end.
            if let Some((sender, thread)) = snapshots {
                let _ = sender.send(ToSnapshots::Finish);
                let _ = thread.join();
            }
            committer.map_or(Ok(()), |c| c.shutdown().map(drop)).map_err(|source| EngineError::Journal { dir, source })
        })
        .await
        .map_err(|e| EngineError::Runtime(e.to_string()))?;
        for shard in &self.inner.shards {
            shard.arbiter.stop();
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;
    use switchboard_journal::{Journal, JournalOptions, RecordIter};
    use switchboard_proto::v1::command::Command as C;
    use switchboard_proto::v1::*;

    #[test]
    fn a_domain_always_hashes_to_the_same_shard() {
        // Pinned (FNV-1a of "a" is 0xaf63dc4c8601ec8c): a change would move domains between shards.
        assert_eq!(shard_of("acme", 2), shard_of("acme", 2));
        assert_eq!([shard_of("", 7), shard_of("a", 7), shard_of("acme", 7)], [2, 5, 3]);
        let spread: std::collections::BTreeSet<usize> = (0..64).map(|i| shard_of(&format!("d{i}"), 4)).collect();
        assert_eq!(spread.len(), 4);
    }

    fn configure_queue(command_id: &str) -> Command {
        Command {
            command_id: command_id.into(),
            domain: "d".into(),
            at_ms: 0,
            command: Some(C::ConfigureQueue(ConfigureQueue {
                queue: Some(QueueConfig {
                    queue_id: format!("q-{command_id}"),
                    name: "Q".into(),
                    channel: Channel::Webchat as i32,
                    strategy: RoutingStrategy::LongestAvailable as i32,
                    offer_timeout_ms: 30_000,
                    transfer_timeout_policy: TransferTimeoutPolicy::Requeue as i32,
                    priority: 0,
                    auto_wrap_up_ms: 0,
                }),
            })),
        }
    }

    /// A journal whose every append is slow, counting the appends.
    struct Slow<J> {
        inner: J,
        appends: Arc<AtomicUsize>,
        fail: bool,
    }

    impl<J: Journal> Journal for Slow<J> {
        fn append(&mut self, records: &[&[u8]]) -> Result<u64, JournalError> {
            std::thread::sleep(Duration::from_millis(50));
            self.appends.fetch_add(1, Ordering::SeqCst);
            if self.fail {
                return Err(JournalError::CommitterStopped);
            }
            self.inner.append(records)
        }
        fn next_offset(&self) -> u64 {
            self.inner.next_offset()
        }
        fn read_from(&self, offset: u64) -> Result<RecordIter, JournalError> {
            self.inner.read_from(offset)
        }
    }

    fn slow_shard(
        fail: bool,
        mailbox_capacity: usize,
    ) -> (Shard, Arc<AtomicUsize>, GroupCommitter<Slow<EmbeddedJournal>>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = EmbeddedJournal::open(dir.path(), JournalOptions::default()).unwrap();
        let appends = Arc::new(AtomicUsize::new(0));
        let committer = GroupCommitter::new(Slow { inner: journal, appends: appends.clone(), fail });
        let (subscribers, _) = broadcast::channel(1024);
        let options = EngineOptions { mailbox_capacity, ..EngineOptions::new(dir.path()) };
        let timers = Arbiter::new();
        let shared = Shared {
            options: &options,
            subscribers,
            timer_arbiter: &timers,
            durable_end: Arc::new(AtomicU64::new(0)),
            snapshots: None,
        };
        let (shard, _writer) = spawn_shard(0, BTreeMap::new(), committer.appender(), &shared);
        (shard, appends, committer, dir)
    }

    #[actix_rt::test]
    async fn commands_decided_while_earlier_ones_are_written_share_the_next_append() {
        // given a shard whose journal takes 50 ms per append
        let (shard, appends, committer, _dir) = slow_shard(false, 1024);

        // when 20 commands arrive at once
        let mut pending = Vec::new();
        for i in 0..20 {
            pending.push(Submit::hand_over(&shard.addr, configure_queue(&format!("c{i}")), Mode::Normal).await);
        }
        let mut sequences = Vec::new();
        for p in pending {
            sequences.extend(p.await.unwrap().unwrap().iter().map(|e| e.sequence));
        }

        // then each got its events, in decision order, written in far fewer appends than commands
        assert_eq!(sequences, (1..=20).collect::<Vec<u64>>());
        assert!(appends.load(Ordering::SeqCst) <= 3, "{} appends", appends.load(Ordering::SeqCst));
        assert_eq!(committer.shutdown().unwrap().inner.next_offset(), 20);
    }

    #[actix_rt::test]
    async fn timers_fired_together_are_each_carried_out_and_one_no_longer_live_changes_nothing() {
        use crate::shard::Fire;
        use crate::timer::{Due, Timer};
        use switchboard_domain::testing::{agent, available, customer_message, offered, webchat_queue};
        let in_d = |command_id: &str, command: C| Command {
            command_id: command_id.into(),
            domain: "d".into(),
            at_ms: 0,
            command: Some(command),
        };
        let expire = |offer: &ConversationOffered| Due {
            deadline_ms: offer.deadline_ms,
            domain: "d".into(),
            what: Timer::ExpireOffer { offer_id: offer.offer_id.clone() },
        };
        // given an agent who accepted one offer and holds another, still open
        let (shard, _appends, _committer, _dir) = slow_shard(false, 1024);
        let mut last = Vec::new();
        for (id, command) in [
            ("q", webchat_queue("sales", 30_000, 0)),
            ("a", agent("a1", Channel::Webchat as i32, &["sales"])),
            ("s", available("a1")),
            ("m1", customer_message("c1", "sales", "m1")),
        ] {
            last = Submit::hand_over(&shard.addr, in_d(id, command), Mode::Normal).await.await.unwrap().unwrap();
        }
        let answered = offered(&last).expect("c1 offered to a1");
        let accept = C::AcceptOffer(AcceptOffer { agent_id: "a1".into(), offer_id: answered.offer_id.clone() });
        Submit::hand_over(&shard.addr, in_d("accept", accept), Mode::Normal).await.await.unwrap().unwrap();
        let message = customer_message("c2", "sales", "m2");
        let events = Submit::hand_over(&shard.addr, in_d("m2", message), Mode::Normal).await.await.unwrap().unwrap();
        let open = offered(&events).expect("c2 offered to a1").clone();

        let before = read_shard(&shard.addr, None, |states| states[0].1.clone()).await.unwrap();

        // when both offers' deadlines fire together
        let now_ms = open.deadline_ms.max(answered.deadline_ms);
        shard.addr.send(Fire { due: vec![expire(answered), expire(&open)], now_ms }).await.unwrap();

        // then the open offer timed out (the agent in RONA), and what was written is what
        // carrying out that timer alone writes: the answered offer's timer changed nothing
        let open_id = open.offer_id.clone();
        let (after, timed_out, rona, still_held) = read_shard(&shard.addr, None, move |states| {
            let state = states[0].1;
            let a1 = &state.agents["a1"];
            let timed_out = !state.offers.contains_key(&open_id);
            (state.last_sequence, timed_out, a1.status == AgentStatus::Rona, a1.holdings.contains_key("c1"))
        })
        .await
        .unwrap();
        assert!(timed_out && rona && still_held, "timed out {timed_out}, RONA {rona}, c1 held {still_held}");
        let alone = before.clone().execute(&expire(&open).command(now_ms)).unwrap();
        assert!(alone.iter().any(|e| matches!(e.event, Some(envelope::Event::OfferTimedOut(_)))));
        assert_eq!(after - before.last_sequence, alone.len() as u64);
    }

    #[actix_rt::test]
    async fn a_command_handed_to_a_full_mailbox_waits_for_room_and_is_answered_in_turn() {
        // given a shard with room for one message, held up by a read on its thread
        let (shard, _appends, _committer, _dir) = slow_shard(false, 1);
        let held = Duration::from_millis(300);
        shard.addr.do_send(States {
            domain: None,
            view: Box::new(move |_| {
                std::thread::sleep(held);
                Box::new(())
            }),
        });
        let started = std::time::Instant::now();

        // when more commands are handed over than the mailbox holds
        let mut pending = Vec::new();
        // (more than actix's default of 16 too, in case the shard has not yet set its own)
        for i in 0..40 {
            pending.push(Submit::hand_over(&shard.addr, configure_queue(&format!("c{i}")), Mode::Normal).await);
        }

        // then handing them over waited for the shard, and each is answered, in order
        assert!(started.elapsed() >= held / 2, "handed over in {:?}", started.elapsed());
        let mut sequences = Vec::new();
        for p in pending {
            sequences.extend(p.await.unwrap().unwrap().iter().map(|e| e.sequence));
        }
        assert_eq!(sequences, (1..=40).collect::<Vec<u64>>());
    }

    #[actix_rt::test]
    async fn a_failed_append_takes_the_shard_out_of_service() {
        // given a shard whose journal fails every append
        let (shard, appends, _committer, _dir) = slow_shard(true, 1024);

        // when a command is submitted, its caller hears of the failure, not of events
        let first = Submit::hand_over(&shard.addr, configure_queue("a"), Mode::Normal).await.await.unwrap();
        assert!(matches!(first, Err(SubmitError::Unavailable(Outage::JournalFailed(_)))), "{first:?}");

        // then later commands are refused without being decided or written
        let second = Submit::hand_over(&shard.addr, configure_queue("b"), Mode::Normal).await.await.unwrap();
        assert!(matches!(second, Err(SubmitError::Unavailable(Outage::JournalFailed(_)))), "{second:?}");
        assert_eq!(appends.load(Ordering::SeqCst), 1);
    }
}
