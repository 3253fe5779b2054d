//! Snapshots of the live engine: a restart from them gives exactly the state
//! a fold of the whole journal gives, reading only the journal's tail.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prost::Message;
use switchboard_domain::testing::offered;
use switchboard_journal::{EmbeddedJournal, Journal, JournalOptions};
use switchboard_live::{DomainState, Engine, EngineOptions, Envelope, SnapshotError};
use switchboard_proto::v1::command::Command as C;
use switchboard_proto::v1::*;

fn command(domain: &str, command_id: &str, body: C) -> Command {
    Command { command_id: command_id.into(), domain: domain.into(), at_ms: 0, command: Some(body) }
}

/// Queue "sales", agents a1 and a2, one wrap-up reason.
fn configuration(domain: &str) -> Vec<Command> {
    let queue = QueueConfig {
        queue_id: "sales".into(),
        name: "Sales".into(),
        channel: Channel::Webchat as i32,
        strategy: RoutingStrategy::LongestAvailable as i32,
        offer_timeout_ms: 600_000,
        transfer_timeout_policy: TransferTimeoutPolicy::Requeue as i32,
        priority: 0,
        auto_wrap_up_ms: 0,
    };
    let mut commands = vec![command(domain, "cfg-queue", C::ConfigureQueue(ConfigureQueue { queue: Some(queue) }))];
    for agent_id in ["a1", "a2"] {
        let profile = AgentProfile {
            agent_id: agent_id.into(),
            name: agent_id.to_uppercase(),
            capacities: vec![ChannelCapacity { channel: Channel::Webchat as i32, max: 2 }],
            queue_ids: vec!["sales".into()],
        };
        commands.push(command(
            domain,
            &format!("cfg-{agent_id}"),
            C::ConfigureAgent(ConfigureAgent { profile: Some(profile) }),
        ));
    }
    commands.push(command(
        domain,
        "cfg-reasons",
        C::ConfigureWrapUpReasons(ConfigureWrapUpReasons { reasons: vec!["sold".into()] }),
    ));
    commands
}

fn options(dir: &Path, snapshot_every: u64) -> EngineOptions {
    EngineOptions { snapshot_every, ..EngineOptions::new(dir) }
}

async fn start(dir: &Path, snapshot_every: u64, domains: &[String]) -> Engine {
    let configuration = domains.iter().flat_map(|d| configuration(d)).collect();
    Engine::start(options(dir, snapshot_every), configuration).await.unwrap()
}

fn domains(count: usize) -> Vec<String> {
    (0..count).map(|d| format!("tenant-{d}")).collect()
}

/// Conversations `from..to` in every domain, each domain in its own task:
/// message, accept, reply, end, wrap-up; the last one of each domain is
/// left offered, so open offers and holdings are in the state too.
async fn traffic(engine: &Engine, domains: &[String], from: usize, to: usize) {
    let mut tasks = Vec::new();
    for domain in domains {
        let (engine, domain) = (engine.clone(), domain.clone());
        tasks.push(actix_rt::spawn(async move {
            for agent in ["a1", "a2"] {
                let available = SetAgentState {
                    agent_id: agent.into(),
                    status: AgentStatus::Available as i32,
                    ..Default::default()
                };
                // Refused if already available: either way the agent is.
                let _ = engine
                    .submit(command(&domain, &format!("avail-{agent}-{from}"), C::SetAgentState(available)))
                    .await;
            }
            for i in from..to {
                let conversation_id = format!("conv-{i}");
                let message = ReceiveCustomerMessage {
                    conversation_id: conversation_id.clone(),
                    channel: Channel::Webchat as i32,
                    queue_id: "sales".into(),
                    message_id: format!("m-{i}"),
                    text: "hello".into(),
                    ..Default::default()
                };
                let events = engine
                    .submit(command(&domain, &format!("msg-{i}"), C::ReceiveCustomerMessage(message)))
                    .await
                    .unwrap();
                if i + 1 == to {
                    break;
                }
                let offer = offered(&events).expect("an agent is free").clone();
                let agent_id = offer.agent_id.clone();
                let steps = [
                    C::AcceptOffer(AcceptOffer { agent_id: agent_id.clone(), offer_id: offer.offer_id }),
                    C::SendAgentMessage(SendAgentMessage {
                        agent_id: agent_id.clone(),
                        conversation_id: conversation_id.clone(),
                        message_id: format!("reply-{i}"),
                        text: "hi".into(),
                        ..Default::default()
                    }),
                    C::EndConversation(EndConversation {
                        agent_id: agent_id.clone(),
                        conversation_id: conversation_id.clone(),
                    }),
                    C::SubmitWrapUp(SubmitWrapUp {
                        agent_id: agent_id.clone(),
                        conversation_id: conversation_id.clone(),
                        reasons: vec!["sold".into()],
                    }),
                ];
                for (step, body) in steps.into_iter().enumerate() {
                    engine.submit(command(&domain, &format!("step-{i}-{step}"), body)).await.unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Every record of the journal with its offset, read independently of the engine.
fn records(dir: &Path) -> Vec<(u64, Envelope)> {
    let (journal, _) = EmbeddedJournal::open_read_only(dir).unwrap();
    journal
        .read_from(0)
        .unwrap()
        .map(|r| r.unwrap())
        .map(|(o, b)| (o, Envelope::decode(b.as_slice()).unwrap()))
        .collect()
}

/// The states a fold of the journal's records below `end` gives.
fn fold_below(dir: &Path, end: u64) -> BTreeMap<String, DomainState> {
    let mut states: BTreeMap<String, DomainState> = BTreeMap::new();
    for (_, envelope) in records(dir).into_iter().filter(|(offset, _)| *offset < end) {
        states
            .entry(envelope.domain.clone())
            .or_insert_with(|| DomainState::new(&envelope.domain))
            .apply(&envelope)
            .unwrap();
    }
    states
}

/// What a fold of the whole journal gives, as the replay digest serializes it.
fn folded(dir: &Path) -> Vec<u8> {
    serde_json::to_vec(&fold_below(dir, u64::MAX)).unwrap()
}

async fn states(engine: &Engine) -> Vec<u8> {
    serde_json::to_vec(&engine.states().await.unwrap()).unwrap()
}

/// The snapshot files: (shard, shard count, covered offset, path), newest first.
fn snapshots(dir: &Path) -> Vec<(usize, usize, u64, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir.join("snapshots")) else { return Vec::new() };
    let mut found: Vec<(usize, usize, u64, PathBuf)> = entries
        .map(|e| e.unwrap().path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.strip_prefix("shard-")?.strip_suffix(".snapshot")?.to_owned();
            let (shard, rest) = name.split_once("-of-")?;
            let (shards, covered) = rest.split_once("-at-")?;
            Some((shard.parse().ok()?, shards.parse().ok()?, covered.parse().ok()?, path))
        })
        .collect();
    found.sort_by_key(|s| std::cmp::Reverse(s.2));
    found
}

/// The engine's shard of a domain (FNV-1a of its name), pinned by its unit test.
fn shard_of(domain: &str, shards: usize) -> usize {
    let hash = domain.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (hash % shards as u64) as usize
}

/// Waits up to 10 s until every shard of `shards` has a snapshot covering at least `at_least`.
async fn wait_for_snapshots(dir: &Path, shards: usize, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = snapshots(dir);
        if (0..shards).all(|i| found.iter().any(|s| s.0 == i && s.1 == shards && s.2 >= at_least)) {
            return;
        }
        assert!(Instant::now() < deadline, "no snapshot of every shard covering {at_least}: {found:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stops the engine as a crash would, without a shutdown (and so without
/// the last snapshots); dropping the last handle releases the journal lock.
async fn crash(engine: Engine) {
    drop(engine);
    // Let the old shards' threads wind down before the next engine starts.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[actix_rt::test]
async fn a_restart_from_snapshots_gives_the_states_of_a_full_fold_and_reads_nothing_more() {
    // given an engine that took periodic snapshots and shut down
    let dir = tempfile::tempdir().unwrap();
    let tenants = domains(5);
    let engine = start(dir.path(), 40, &tenants).await;
    traffic(&engine, &tenants, 0, 12).await;
    let before = states(&engine).await;
    let retried =
        engine.submit(command("tenant-0", "msg-3", C::CustomerLeave(CustomerLeave::default()))).await.unwrap();
    engine.shutdown().await.unwrap();
    let end = records(dir.path()).len() as u64;

    // when it starts again
    let engine = start(dir.path(), 40, &tenants).await;

    // then it rebuilt its states from the snapshots taken at shutdown, reading no record
    let report = engine.recovery_report();
    assert_eq!(report.snapshots_used.len(), 2, "{report:?}");
    assert!(report.snapshots_rejected.is_empty(), "{report:?}");
    assert_eq!((report.journal_end, report.read_from, report.records_read), (end, end, 0));
    // and they are exactly what a fold of the whole journal gives
    assert_eq!(states(&engine).await, before);
    assert_eq!(states(&engine).await, folded(dir.path()));
    // and a command retried across the restart is still recognised (the idempotency window was kept)
    let again = engine.submit(command("tenant-0", "msg-3", C::CustomerLeave(CustomerLeave::default()))).await.unwrap();
    assert_eq!(again, retried);
    assert_eq!(records(dir.path()).len() as u64, end);
    engine.shutdown().await.unwrap();

    // and at most 2 snapshots of each shard are kept
    let kept = snapshots(dir.path());
    for shard in 0..2 {
        assert!((1..=2).contains(&kept.iter().filter(|s| s.0 == shard).count()), "{kept:?}");
    }
}

#[actix_rt::test]
async fn after_a_crash_only_the_journal_after_the_periodic_snapshots_is_read() {
    // given one domain, so that one of the 2 shards is idle and snapshots only when asked to,
    // with a short idempotency window, so that the state (not the commands remembered) sets
    // how often the busy shard's snapshots are worth writing
    let dir = tempfile::tempdir().unwrap();
    let tenants = domains(1);
    let options = EngineOptions { idempotency_window: 8, ..options(dir.path(), 10) };
    let engine = Engine::start(options.clone(), configuration(&tenants[0])).await.unwrap();
    traffic(&engine, &tenants, 0, 60).await;
    let written = records(dir.path()).len() as u64;
    // The idle shard is asked once it lags by 10 × 2 records. The busy one hands over a snapshot
    // every 10 events, written once the journal has grown by the size of its last one: a closed
    // conversation takes less room in a snapshot than its events in the journal, so the newest
    // covers most of the journal. (Each shard's last one may lag by up to its own size in log,
    // depending on where the traffic stopped: the idle shard's stood at 291 to 307 of 540 in
    // runs on a loaded machine, so no more than half is waited for.)
    wait_for_snapshots(dir.path(), 2, written / 2).await;
    // and more decisions after the snapshots, then a crash
    traffic(&engine, &tenants, 60, 63).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // let snapshot writes in flight land
    crash(engine).await;
    let end = records(dir.path()).len() as u64;

    // when it starts again
    let engine = Engine::start(options, configuration(&tenants[0])).await.unwrap();

    // then it read only the tail after the newest snapshots, not the whole journal
    let report = engine.recovery_report();
    assert_eq!(report.snapshots_used.len(), 2, "{report:?}");
    assert!(report.read_from > 0 && report.read_from <= end, "{report:?}");
    assert_eq!(report.records_read, end - report.read_from, "{report:?}");
    assert!(report.records_read < end * 3 / 5, "{report:?}");
    assert!(report.events_applied <= report.records_read);
    // and the states are those of a full fold
    assert_eq!(states(&engine).await, folded(dir.path()));
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_damaged_newest_snapshot_falls_back_to_the_previous_one_then_to_a_full_fold() {
    // given several snapshots per shard
    let dir = tempfile::tempdir().unwrap();
    let tenants = domains(4);
    let engine = start(dir.path(), 30, &tenants).await;
    traffic(&engine, &tenants, 0, 15).await;
    engine.shutdown().await.unwrap();
    let kept = snapshots(dir.path());
    let newest = kept.iter().find(|s| s.0 == 0).unwrap().clone();
    let older = kept.iter().filter(|s| s.0 == 0).nth(1).expect("an older snapshot of shard 0").clone();

    // when the newest of shard 0 is damaged (one byte in its body flipped)
    let mut bytes = fs::read(&newest.3).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    fs::write(&newest.3, bytes).unwrap();
    let engine = start(dir.path(), 30, &tenants).await;

    // then it is passed over for the previous one, and the states are still those of a full fold
    let report = engine.recovery_report();
    assert!(
        matches!(&report.snapshots_rejected[..], [(path, SnapshotError::Damaged { .. })] if *path == newest.3),
        "{report:?}"
    );
    assert!(report.snapshots_used.contains(&older.3), "{report:?}");
    assert_eq!(report.read_from, older.2.min(kept.iter().find(|s| s.0 == 1).unwrap().2));
    assert_eq!(states(&engine).await, folded(dir.path()));
    engine.shutdown().await.unwrap();

    // and when every snapshot is torn, the whole journal is folded
    for (_, _, _, path) in snapshots(dir.path()) {
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    }
    let engine = start(dir.path(), 30, &tenants).await;
    let report = engine.recovery_report();
    assert!(report.snapshots_used.is_empty(), "{report:?}");
    assert_eq!((report.read_from, report.records_read), (0, report.journal_end));
    assert_eq!(states(&engine).await, folded(dir.path()));
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_snapshot_holds_exactly_the_durable_events_below_its_covered_offset() {
    // given an engine snapshotting often while many domains decide at once
    let dir = tempfile::tempdir().unwrap();
    let tenants = domains(6);
    let engine = start(dir.path(), 7, &tenants).await;
    let load = traffic(&engine, &tenants, 0, 10);
    let check = async {
        let mut checked = BTreeMap::new();
        for _ in 0..40 {
            // then, while it runs, every snapshot's covered offset is already in the journal
            let found = snapshots(dir.path());
            let (journal, _) = EmbeddedJournal::open_read_only(dir.path()).unwrap();
            for (_, _, covered, path) in &found {
                assert!(*covered <= journal.next_offset(), "{} beyond {}", path.display(), journal.next_offset());
            }
            // and its states are exactly the fold of its shard's records below that offset
            for (shard, shards, covered, path) in found {
                if checked.contains_key(&path) {
                    continue;
                }
                let held: BTreeMap<String, DomainState> = match switchboard_live::read_snapshot_states(&path) {
                    Ok(states) => states.into_iter().map(|state| (state.domain.clone(), state)).collect(),
                    Err(SnapshotError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => continue, // replaced by a newer one meanwhile
                    Err(error) => panic!("{error}"),
                };
                let mut expected = fold_below(dir.path(), covered);
                expected.retain(|domain, _| shard_of(domain, shards) == shard);
                assert_eq!(held.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "{}", path.display());
                for (name, state) in &held {
                    assert_eq!(
                        serde_json::to_value(state).unwrap(),
                        serde_json::to_value(&expected[name]).unwrap(),
                        "{} {name}",
                        path.display()
                    );
                }
                checked.insert(path, covered);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        checked
    };
    let ((), checked) = tokio::join!(load, check);
    let end = records(dir.path()).len() as u64;
    let during: Vec<u64> = checked.values().copied().filter(|covered| *covered < end).collect();
    assert!(during.len() >= 5, "snapshots checked while the engine ran: {checked:?}");
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn snapshots_covering_records_the_journal_lost_are_not_used() {
    // given snapshots of a journal, and a copy of that journal cut at an older snapshot's covered offset
    let dir = tempfile::tempdir().unwrap();
    let tenants = domains(3);
    let engine = start(dir.path(), 30, &tenants).await;
    traffic(&engine, &tenants, 0, 12).await;
    engine.shutdown().await.unwrap();
    let kept = snapshots(dir.path());
    // The highest of the shards' oldest snapshots: each shard keeps one within the cut and one beyond it.
    let oldest = |shard| kept.iter().filter(|s| s.0 == shard).map(|s| s.2).min().unwrap();
    let cut = oldest(0).max(oldest(1));
    assert!((0..2).all(|shard| kept.iter().any(|s| s.0 == shard && s.2 > cut)), "{kept:?}");
    let copy = tempfile::tempdir().unwrap();
    let (mut journal, _) = EmbeddedJournal::open(copy.path(), JournalOptions::default()).unwrap();
    for (offset, envelope) in records(dir.path()) {
        if offset < cut {
            journal.append(&[&envelope.encode_to_vec()]).unwrap();
        }
    }
    drop(journal);
    fs::create_dir(copy.path().join("snapshots")).unwrap();
    for (_, _, _, path) in &kept {
        fs::copy(path, copy.path().join("snapshots").join(path.file_name().unwrap())).unwrap();
    }

    // when an engine starts on the copy
    let engine = start(copy.path(), 30, &tenants).await;

    // then the snapshots beyond its end are refused, the older ones are used
    let report = engine.recovery_report();
    assert_eq!(report.snapshots_used.len(), 2, "{report:?}");
    assert_eq!(report.read_from, oldest(0).min(oldest(1)));
    let beyond: Vec<_> = kept.iter().filter(|s| s.2 > cut).map(|s| s.3.file_name().unwrap()).collect();
    assert_eq!(report.snapshots_rejected.len(), beyond.len(), "{report:?}");
    for (path, error) in &report.snapshots_rejected {
        assert!(matches!(error, SnapshotError::BeyondJournal { .. }), "{error}");
        assert!(beyond.contains(&path.file_name().unwrap()));
    }
    // and the states are the fold of what the journal holds
    assert_eq!(states(&engine).await, folded(copy.path()));
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_changed_shard_count_starts_from_the_old_snapshots_and_replaces_them() {
    let dir = tempfile::tempdir().unwrap();
    let tenants = domains(5);
    let engine = start(dir.path(), 1000, &tenants).await;
    traffic(&engine, &tenants, 0, 5).await;
    engine.shutdown().await.unwrap();

    // when the engine restarts with 3 shards instead of 2
    let three = EngineOptions { shards: 3, ..options(dir.path(), 1000) };
    let engine = Engine::start(three.clone(), Vec::new()).await.unwrap();

    // then it starts from the 2-shard snapshots, with the states of a full fold
    assert_eq!(engine.recovery_report().snapshots_used.len(), 2);
    assert_eq!(engine.recovery_report().records_read, 0);
    assert_eq!(states(&engine).await, folded(dir.path()));
    traffic(&engine, &tenants, 5, 7).await;
    engine.shutdown().await.unwrap();

    // and once each of the 3 shards has written one, the 2-shard ones are gone
    assert!(snapshots(dir.path()).iter().all(|s| s.1 == 3), "{:?}", snapshots(dir.path()));
    let engine = Engine::start(three, Vec::new()).await.unwrap();
    assert_eq!(engine.recovery_report().snapshots_used.len(), 3);
    assert_eq!(states(&engine).await, folded(dir.path()));
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn snapshot_every_zero_writes_no_snapshot_and_ignores_existing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let tenants = domains(2);
    let engine = start(dir.path(), 0, &tenants).await;
    traffic(&engine, &tenants, 0, 8).await;
    engine.shutdown().await.unwrap();
    assert!(!dir.path().join("snapshots").exists());

    // snapshots written by a run that had them enabled...
    let engine = start(dir.path(), 10, &tenants).await;
    assert_eq!(engine.recovery_report().read_from, 0);
    engine.shutdown().await.unwrap();
    assert!(!snapshots(dir.path()).is_empty());

    // ...are not read by one that has them disabled: it folds every record
    let engine = start(dir.path(), 0, &tenants).await;
    let report = engine.recovery_report();
    assert!(report.snapshots_used.is_empty());
    assert_eq!(
        (report.read_from, report.records_read, report.events_applied),
        (0, report.journal_end, report.journal_end)
    );
    assert_eq!(states(&engine).await, folded(dir.path()));
    engine.shutdown().await.unwrap();
}

/// Start-up time on a large journal, with and without snapshots. Run with
/// `SWITCHBOARD_BENCH_JOURNAL=<dir of a journal> cargo test --release -p
/// switchboard-live --test snapshots -- --ignored --nocapture` (e.g. a
/// journal written by `switchboard simulate --seed 3 --conversations 10000`);
/// the directory is copied, not changed.
#[actix_rt::test]
#[ignore = "needs a large journal; see the doc comment"]
async fn start_up_time_with_and_without_snapshots() {
    let source = PathBuf::from(std::env::var("SWITCHBOARD_BENCH_JOURNAL").expect("SWITCHBOARD_BENCH_JOURNAL"));
    let all = records(&source);
    let dir = tempfile::tempdir().unwrap();
    let timed = |dir: PathBuf, snapshot_every| async move {
        let started = Instant::now();
        let engine = Engine::start(options(&dir, snapshot_every), Vec::new()).await.unwrap();
        let elapsed = started.elapsed();
        let report = engine.recovery_report();
        let report = format!("read from {}, {} records read", report.read_from, report.records_read);
        let copying = Instant::now();
        let states = engine.states().await.unwrap();
        let copy = copying.elapsed();
        let stopping = Instant::now();
        engine.shutdown().await.unwrap();
        (elapsed, copy, stopping.elapsed(), report, states)
    };
    let append = |records: &[(u64, Envelope)]| {
        let (mut journal, _) = EmbeddedJournal::open(dir.path(), JournalOptions::default()).unwrap();
        let encoded: Vec<Vec<u8>> = records.iter().map(|(_, e)| e.encode_to_vec()).collect();
        for chunk in encoded.chunks(4096) {
            journal.append(&chunk.iter().map(Vec::as_slice).collect::<Vec<_>>()).unwrap();
        }
    };

    // A snapshot at a command boundary about 70 % in, where no timer is due (so that the start
    // that writes it appends nothing), then the rest of the journal as its tail.
    let mut states: BTreeMap<String, DomainState> = BTreeMap::new();
    let mut cut = None;
    for (i, (_, envelope)) in all.iter().enumerate() {
        let state = states.entry(envelope.domain.clone()).or_insert_with(|| DomainState::new(&envelope.domain));
        state.apply(envelope).unwrap();
        let boundary = all.get(i + 1).is_none_or(|(_, next)| next.command_id != envelope.command_id);
        if i * 10 >= all.len() * 7 && boundary && states.values().all(timer_free) {
            cut = Some(i + 1);
            break;
        }
    }
    let cut = cut.expect("a moment without timers");
    append(&all[..cut]);
    let (first, _, shutdown, _, _) = timed(dir.path().to_path_buf(), 50_000).await;
    println!("{cut} records: full fold {first:?}, shutdown writing the snapshots {shutdown:?}");
    for (_, _, _, path) in snapshots(dir.path()) {
        println!("  {} ({} bytes)", path.display(), fs::metadata(&path).unwrap().len());
    }
    append(&all[cut..]);
    let (tail, copy, _, report, from_snapshots) = timed(dir.path().to_path_buf(), 50_000).await;
    println!("{} records: snapshot + tail {tail:?} ({report}); a copy of the states {copy:?}", all.len());
    let (none, _, _, report, full) = timed(dir.path().to_path_buf(), 0).await;
    println!("{} records: full fold {none:?} ({report})", all.len());
    let (latest, _, _, report, _) = timed(dir.path().to_path_buf(), 50_000).await;
    println!("{} records: snapshot at the end {latest:?} ({report})", all.len());
    assert_eq!(serde_json::to_vec(&from_snapshots).unwrap(), serde_json::to_vec(&full).unwrap());
}

/// Whether nothing in the state calls for a timer (no open offer, no pending automatic wrap-up).
fn timer_free(state: &DomainState) -> bool {
    let automatic = |queue_id: &str| state.queues.get(queue_id).is_some_and(|q| q.config.auto_wrap_up_ms > 0);
    state.offers.is_empty()
        && state.agents.values().flat_map(|a| a.holdings.values()).all(|h| match &h.role {
            switchboard_domain::state::Role::WrapUp { queue_id, .. } => !automatic(queue_id),
            _ => true,
        })
}
