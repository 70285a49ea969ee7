//! `biometric-bridge dlq list | show | replay`: inspect the dead-letter topic and re-inject dead
//! letters into their input topic after a fix, so nothing rejected is lost for good.
//!
//! The DLQ topic comes from the topology (`--topology`, `--namespace`); it is only read, never
//! consumed as a group, so the tools can run at any time beside the processor.
//!
//! - `letter.rs`: a dead letter and the selection (`--error-class`, `--since`, `--limit`);
//! - `print.rs`: the `list` line and the `show` text;
//! - `read.rs`: reading a topic up to its current end;
//! - `replay.rs`: the replayed record, and the already-replayed check.

mod letter;
mod print;
mod read;
mod replay;

use std::io::Write;

pub use letter::parse_since;
use letter::{DeadLetter, Selection, parse_position};

use anyhow::Context;

use crate::audit::{Action, Actor, Entry};
use crate::config::KafkaArgs;
use crate::shutdown::CancellationToken;
use crate::topology::TopologyArgs;

/// Where the DLQ is.
#[derive(Debug, Clone, clap::Args)]
pub struct DlqSource {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topology: TopologyArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// List dead letters, one line each, from the beginning of the DLQ to its current end.
    List {
        #[command(flatten)]
        selection: Selection,
        #[command(flatten)]
        source: DlqSource,
    },
    /// Print one dead letter: every header, and the payload (text if UTF-8, else hex). A sealed
    /// payload is opened with its data key (DATA_ENCRYPTION_KEY and the database) while the key
    /// exists.
    Show {
        /// `<partition>/<offset>`, as `dlq list` prints it.
        #[arg(value_parser = parse_position)]
        position: (i32, i64),
        /// Write only the payload's bytes, unchanged, to stdout (e.g. to save or diff it, or to
        /// verify its signature again): the opened body when it was sealed.
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        source: DlqSource,
        #[command(flatten)]
        database: crate::config::DatabaseArgs,
    },
    /// Re-produce dead letters to their source topic with their original key, bytes and headers
    /// plus `replayed-from`. Dead letters already replayed there are skipped (see `--force`).
    Replay {
        #[command(flatten)]
        selection: Selection,
        /// Produce to this topic instead of each dead letter's `source-topic`.
        #[arg(long)]
        to: Option<String>,
        /// Print what would be replayed; produce nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replay even dead letters that were already replayed to the target.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        source: DlqSource,
        /// Where the replay is audited (table `audit_log`); a replay that cannot be audited is
        /// refused before anything is produced.
        #[command(flatten)]
        database: crate::config::DatabaseArgs,
    },
}

pub async fn run(command: DlqCommand, shutdown: CancellationToken) -> anyhow::Result<()> {
    match command {
        DlqCommand::List { selection, source } => {
            let (_, letters) = select(&source, &selection, &shutdown).await?;
            let mut out = std::io::stdout().lock();
            for letter in &letters {
                writeln!(out, "{}", print::list_line(letter))?;
            }
            Ok(())
        }
        DlqCommand::Show { position: (partition, offset), raw, source, database } => {
            let topic = source.topology.load()?.dlq_topic;
            let kafka = source.kafka.clone();
            let reading = topic.clone();
            let letter = tokio::task::spawn_blocking(move || read::read_one(&kafka, &reading, partition, offset)).await??;
            let (letter, sealed) = open_sealed(letter, &database).await?;
            if raw && sealed.as_ref().is_some_and(|sealed| !sealed.opened) {
                anyhow::bail!("{}", sealed.map(|sealed| sealed.note).unwrap_or_default());
            }
            let note = sealed.map(|sealed| sealed.note);
            let bytes = if raw { letter.payload.clone().unwrap_or_default() } else { print::show(&topic, &letter, note.as_deref()) };
            std::io::stdout().lock().write_all(&bytes)?;
            Ok(())
        }
        DlqCommand::Replay { selection, to, dry_run, force, source, database } => {
            let options = ReplayOptions { to, dry_run, force };
            if dry_run {
                return replay(&source, &selection, &options, &shutdown).await.map(|_| ());
            }
            let pool = database.migrated_pool().await.context("dlq replay is audited, and the audit log is unreachable")?;
            let dlq_topic = source.topology.load()?.dlq_topic;
            let result = replay(&source, &selection, &options, &shutdown).await;
            let entry = Entry::new(Actor::operator(), Action::DlqReplay)
                .target(dlq_topic)
                .detail("to", options.to.clone().unwrap_or_else(|| "each source-topic".to_owned()));
            let entry = match &result {
                Ok(counts) => entry.detail("replayed", counts.replayed).detail("skipped", counts.skipped),
                Err(_) => entry.failed("replay_failed"),
            };
            crate::audit::record_or_warn(&pool, &entry).await?;
            result.map(|_| ())
        }
    }
}

/// The DLQ topic and the dead letters `selection` picks from it, in partition/offset order.
/// `list` does not need payloads, but keeping them costs little: a DLQ holds few records.
async fn select(source: &DlqSource, selection: &Selection, shutdown: &CancellationToken) -> anyhow::Result<(String, Vec<DeadLetter>)> {
    let topic = source.topology.load()?.dlq_topic;
    let (kafka, reading, filter, shutdown) = (source.kafka.clone(), topic.clone(), selection.clone(), shutdown.clone());
    let letters = tokio::task::spawn_blocking(move || {
        let mut selected = Vec::new();
        read::read_to_end(&kafka, &reading, read::Start::Beginning, &shutdown, |message| {
            let letter = DeadLetter::from_message(message);
            if filter.matches(&letter) {
                selected.push(letter);
            }
        })
        .map(|()| selected)
    })
    .await??;
    Ok((topic, selection.finish(letters, |letter| (letter.partition, letter.offset))))
}

struct ReplayOptions {
    to: Option<String>,
    dry_run: bool,
    force: bool,
}

/// `letter` with its payload: a letter too large for the DLQ was written without it
/// (`payload-omitted`), and the bytes are read back from the source record it names.
async fn with_omitted_payload(source: &DlqSource, letter: &DeadLetter) -> anyhow::Result<DeadLetter> {
    if letter.header(crate::kafka::headers::PAYLOAD_OMITTED).is_none() {
        return Ok(letter.clone());
    }
    let header = |name| letter.header(name).map(str::to_owned).ok_or_else(|| anyhow::anyhow!("{}: no {name} header", letter.position()));
    let topic = header(crate::kafka::headers::SOURCE_TOPIC)?;
    let partition: i32 = header(crate::kafka::headers::SOURCE_PARTITION)?.parse()?;
    let offset: i64 = header(crate::kafka::headers::SOURCE_OFFSET)?.parse()?;
    let kafka = source.kafka.clone();
    let original = tokio::task::spawn_blocking(move || read::read_one(&kafka, &topic, partition, offset)).await??;
    let mut complete = letter.clone();
    complete.payload = original.payload;
    complete.headers.retain(|(key, _)| key != crate::kafka::headers::PAYLOAD_OMITTED);
    Ok(complete)
}

/// What a replay did, for its audit record.
struct ReplayCounts {
    replayed: usize,
    skipped: usize,
}

async fn replay(
    source: &DlqSource,
    selection: &Selection,
    options: &ReplayOptions,
    shutdown: &CancellationToken,
) -> anyhow::Result<ReplayCounts> {
    let (dlq_topic, letters) = select(source, selection, shutdown).await?;
    let to = options.to.as_deref();
    let mut already = std::collections::HashSet::new();
    if !options.force {
        for (topic, since) in replay::earliest_by_target(&letters, to) {
            let (kafka, topic, shutdown) = (source.kafka.clone(), topic.to_owned(), shutdown.clone());
            already.extend(tokio::task::spawn_blocking(move || replay::replayed_markers(&kafka, &topic, since, &shutdown)).await??);
        }
    }
    let producer = if options.dry_run { None } else { Some(replay::producer(&source.kafka)?) };
    let (mut replayed, mut skipped_done, mut skipped_orphan) = (0usize, 0usize, 0usize);
    for letter in &letters {
        let marker = replay::marker(&dlq_topic, letter);
        let Some(target) = replay::target(letter, to) else {
            println!("skip    {}: no source-topic header (use --to)", letter.position());
            skipped_orphan += 1;
            continue;
        };
        if already.contains(&marker) {
            println!("skip    {} -> {target}: already replayed (found replayed-from: {marker} there)", letter.position());
            skipped_done += 1;
            continue;
        }
        match &producer {
            None => println!("would   {} -> {target}", letter.position()),
            Some(producer) => {
                let letter = &with_omitted_payload(source, letter).await?;
                replay::send(producer, target, letter, &marker).await?;
                println!("replay  {} -> {target}", letter.position());
            }
        }
        replayed += 1;
    }
    let verb = if options.dry_run { "dry run: would replay" } else { "replayed" };
    println!(
        "{verb} {replayed} of {} selected dead letter(s); skipped {skipped_done} already replayed, {skipped_orphan} without a target",
        letters.len()
    );
    if skipped_done > 0 {
        tracing::warn!(skipped = skipped_done, "Some dead letters were already replayed and were skipped; --force replays them again.");
    }
    Ok(ReplayCounts { replayed, skipped: skipped_done + skipped_orphan })
}

/// What `show` says about a sealed payload.
struct SealedNote {
    opened: bool,
    note: String,
}

/// `letter` with its payload opened, if it was sealed and its key exists.
async fn open_sealed(mut letter: DeadLetter, database: &crate::config::DatabaseArgs) -> anyhow::Result<(DeadLetter, Option<SealedNote>)> {
    use crate::at_rest::{self, Reading};
    let Some(sealed) = letter.payload.as_deref().and_then(at_rest::envelope::parse) else { return Ok((letter, None)) };
    let key_id = sealed.key_id;
    let Some(kek) = at_rest::Kek::from_env()? else {
        let note = format!("sealed under data key {key_id}; set DATA_ENCRYPTION_KEY to open it");
        return Ok((letter, Some(SealedNote { opened: false, note })));
    };
    let keys = at_rest::DataKeys::new(database.migrated_pool().await?, kek, std::time::Duration::ZERO);
    let payload = letter.payload.clone().unwrap_or_default();
    let note = match at_rest::read(Some(&keys), &payload).await? {
        Reading::Opened(opened) => {
            letter.payload = Some(opened.body);
            let user = opened.vendor_user_id.map_or_else(|| "none".to_owned(), |user| format!("{user:?}"));
            SealedNote { opened: true, note: format!("opened from data key {key_id} (vendor user id {user})") }
        }
        Reading::Erased { .. } => SealedNote {
            opened: false,
            note: format!("sealed under data key {key_id}, which was erased: the payload is unreadable for good"),
        },
        Reading::Plain => unreachable!("parsed as sealed above"),
    };
    Ok((letter, Some(note)))
}
