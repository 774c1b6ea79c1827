//! The broker's own thread: the `async-nats` client on a tokio runtime of its own, so the monoio reactor never
//! waits on the broker. It connects and checks the stream at start; the publisher publishes what the reactor hands
//! it, many publishes in flight, each awaited for its JetStream acknowledgement; one that fails or times out is sent
//! again (same `Nats-Msg-Id`, so the stream keeps one copy) until it is acknowledged, oldest first.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::GetStreamErrorKind, stream};
use async_nats::{ConnectOptions, Event};
use tokio::task::JoinSet;

use super::{NatsConfig, Outgoing, RETRY_PAUSE, Shared, wire};
use crate::redact;

/// Deadline of the first connection and of the stream's creation or check.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A publish not acknowledged within this is sent again.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes awaiting their acknowledgement at once (pipelining; the buffer's byte bound is the real bound).
const MAX_IN_FLIGHT: usize = 1024;

/// The broker's thread once ready: its runtime, to spawn the publisher and the readers on, and the JetStream
/// context they share.
pub(super) struct Connection {
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) context: jetstream::Context,
    /// The stream's last sequence when it was checked (a reader started at it misses nothing published since).
    pub(super) last_sequence: u64,
}

/// Starts the thread, connects to `config.url` and creates (`create`) or checks the stream; returns once the
/// broker is ready, or the reason it is not (naming the redacted URL). The thread then runs what is spawned on
/// the connection's runtime, for the life of the process.
pub(super) fn start(
    config: &NatsConfig,
    url: &str,
    shared: Arc<Shared>,
    create: bool,
) -> Result<Connection, String> {
    let shown = redact::location(url);
    let (ready, started) = std::sync::mpsc::sync_channel(1);
    let (config, url) = (config.clone(), url.to_owned());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("NATS at {shown}: no runtime for the client: {e}"))?;
    std::thread::Builder::new()
        .name("nats".into())
        .spawn(move || {
            runtime.block_on(async move {
                let setup = tokio::time::timeout(
                    CONNECT_TIMEOUT * 2,
                    connect(&config, &url, shared, create),
                )
                .await
                .unwrap_or_else(|_| Err("no answer in time".to_owned()));
                let _ = ready.send(setup.map(|(context, last_sequence)| Connection {
                    runtime: tokio::runtime::Handle::current(),
                    context,
                    last_sequence,
                }));
                // The publisher and the readers run on this runtime while this thread drives it.
                std::future::pending::<()>().await;
            });
        })
        .map_err(|e| format!("NATS at {shown}: no thread for the client: {e}"))?;
    started
        .recv_timeout(CONNECT_TIMEOUT * 3)
        .unwrap_or_else(|_| Err("no answer in time".to_owned()))
        .map_err(|error| format!("NATS at {shown}: {}", redact::urls_in(&error)))
}

/// Connects and makes sure the stream exists with settings that keep what is published.
async fn connect(
    config: &NatsConfig,
    url: &str,
    shared: Arc<Shared>,
    create: bool,
) -> Result<(jetstream::Context, u64), String> {
    let events = shared.clone();
    let mut options = ConnectOptions::new()
        .name("certstream")
        .connection_timeout(CONNECT_TIMEOUT)
        .event_callback(move |event| {
            let shared = events.clone();
            async move { shared.on_event(&event) }
        });
    if let Some(path) = &config.creds {
        options = options.credentials_file(path).await.map_err(|e| {
            format!(
                "credentials file {}: {e}",
                redact::location(&path.display().to_string())
            )
        })?;
    }
    if let Some(path) = &config.tls_ca {
        options = options
            .add_root_certificates(path.clone())
            .require_tls(true);
    }
    let client = options.connect(url).await.map_err(|e| e.to_string())?;
    shared.set_connected(true);
    let mut context = jetstream::new(client);
    context.set_timeout(ACK_TIMEOUT);
    let last_sequence = ensure_stream(&context, config, create).await?;
    Ok((context, last_sequence))
}

/// Creates the stream (when `create`), or checks that an existing one takes our subject and keeps messages by
/// limits (not until consumed, which would drop them before any consumer sees them); returns its last sequence.
async fn ensure_stream(
    context: &jetstream::Context,
    config: &NatsConfig,
    create: bool,
) -> Result<u64, String> {
    let subject = wire::subject(&config.subject_prefix);
    let name = &config.stream;
    match context.get_stream(name).await {
        Ok(mut existing) => {
            let info = existing
                .info()
                .await
                .map_err(|e| format!("stream {name}: {e}"))?;
            let settings = &info.config;
            if !settings
                .subjects
                .iter()
                .any(|pattern| wire::subject_matches(pattern, &subject))
            {
                return Err(format!(
                    "the existing stream {name} takes subjects {:?}, not {subject} (--nats-subject-prefix)",
                    settings.subjects
                ));
            }
            if settings.retention != stream::RetentionPolicy::Limits {
                return Err(format!(
                    "the existing stream {name} keeps messages by {:?}, not by limits: it would drop messages \
                     no consumer has read",
                    settings.retention
                ));
            }
            tracing::info!(stream = %name, %subject, "using the existing JetStream stream");
            Ok(info.state.last_sequence)
        }
        Err(error)
            if matches!(error.kind(), GetStreamErrorKind::JetStream(ref e)
                if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            if !create {
                return Err(format!(
                    "the stream {name} does not exist (an ingester with --nats-url creates it)"
                ));
            }
            context
                .create_stream(stream::Config {
                    name: name.clone(),
                    subjects: vec![format!("{}.>", config.subject_prefix)],
                    retention: stream::RetentionPolicy::Limits,
                    max_age: config.max_age,
                    max_bytes: i64::try_from(config.max_bytes).unwrap_or(i64::MAX),
                    duplicate_window: config.duplicate_window,
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("creating the stream {name}: {e}"))?;
            tracing::info!(stream = %name, %subject, "created the JetStream stream");
            Ok(0)
        }
        Err(error) => Err(format!("stream {name}: {error} (is JetStream enabled?)")),
    }
}

/// What a publish came to: the message, and its acknowledgement (a duplicate?, its stream sequence) or why there
/// was none.
type Attempt = (Outgoing, Result<(bool, u64), String>);

/// Publishes to `subject` until the reactor's side is gone: new messages in order, failed ones again, oldest
/// first.
pub(super) async fn publish(
    context: jetstream::Context,
    subject: String,
    outgoing: flume::Receiver<Outgoing>,
    shared: Arc<Shared>,
) {
    let mut in_flight: JoinSet<Attempt> = JoinSet::new();
    let mut resend = Resend::default();
    loop {
        let room = in_flight.len() < MAX_IN_FLIGHT;
        let step = tokio::select! {
            biased;
            Some(done) = in_flight.join_next() => Step::Done(done),
            message = resend.next(&outgoing), if room => Step::Send(message),
        };
        match step {
            Step::Send(None) => return,
            Step::Send(Some(message)) => {
                let sent = context
                    .send_publish(
                        subject.clone(),
                        jetstream::message::PublishMessage::build()
                            .payload(message.payload.clone())
                            .headers(message.headers.clone()),
                    )
                    .await;
                match sent {
                    Ok(ack) => {
                        in_flight.spawn(async move {
                            let acked = ack.await.map(|ack| (ack.duplicate, ack.sequence));
                            (message, acked.map_err(|e| e.to_string()))
                        });
                    }
                    Err(error) => {
                        shared.failed(&error.to_string());
                        resend.failed(message);
                    }
                }
            }
            Step::Done(Ok((message, Ok((duplicate, sequence))))) => {
                shared.acked(&message, duplicate, sequence);
                resend.succeeded();
            }
            Step::Done(Ok((message, Err(error)))) => {
                shared.failed(&error);
                resend.failed(message);
            }
            // The task only awaits an acknowledgement: it cannot panic, and nothing cancels it.
            Step::Done(Err(error)) => shared.failed(&error.to_string()),
        }
    }
}

/// What is sent next: what failed, oldest first, after a pause that grows while failures go on; else what the
/// reactor hands over.
struct Resend {
    again: BTreeMap<u64, Outgoing>,
    pause: Duration,
    resume_at: Instant,
}

impl Default for Resend {
    fn default() -> Self {
        Self {
            again: BTreeMap::new(),
            pause: RETRY_PAUSE.0,
            resume_at: Instant::now(),
        }
    }
}

impl Resend {
    fn failed(&mut self, message: Outgoing) {
        self.again.insert(message.sequence, message);
        self.resume_at = Instant::now() + self.pause;
        self.pause = (self.pause * 2).min(RETRY_PAUSE.1);
    }

    fn succeeded(&mut self) {
        self.pause = RETRY_PAUSE.0;
    }

    /// The next message to send; `None` once the reactor's side is gone. Cancel-safe (it is cancelled whenever an
    /// acknowledgement comes first): a message is taken out of `again` only after the pause, with no await between
    /// taking it and returning it.
    async fn next(&mut self, outgoing: &flume::Receiver<Outgoing>) -> Option<Outgoing> {
        if self.again.is_empty() {
            outgoing.recv_async().await.ok()
        } else {
            tokio::time::sleep_until(self.resume_at.into()).await;
            self.again.pop_first().map(|(_, message)| message)
        }
    }
}

enum Step {
    Send(Option<Outgoing>),
    Done(Result<Attempt, tokio::task::JoinError>),
}

impl Shared {
    fn on_event(&self, event: &Event) {
        match event {
            Event::Connected => {
                self.set_connected(true);
                tracing::info!("connected to the NATS server");
            }
            Event::Disconnected => {
                self.set_connected(false);
                self.note_error("disconnected from the NATS server");
            }
            Event::ServerError(error) => self.note_error(&format!("NATS server error: {error}")),
            Event::ClientError(error) => self.note_error(&format!("NATS client error: {error}")),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(sequence: u64) -> Outgoing {
        Outgoing {
            sequence,
            log_id: "a".into(),
            index: sequence,
            headers: async_nats::HeaderMap::new(),
            payload: bytes::Bytes::new(),
            bytes: 1,
        }
    }

    #[test]
    fn a_message_to_send_again_survives_a_cancelled_wait_and_goes_first() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (hand_over, outgoing) = flume::unbounded();
            hand_over.send(message(9)).unwrap();
            let mut resend = Resend::default();
            resend.failed(message(2));
            resend.failed(message(1));
            // An acknowledgement (here: a timer) comes first, during the pause.
            tokio::select! {
                biased;
                _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                _ = resend.next(&outgoing) => panic!("sent before the pause ended"),
            }
            let mut order = Vec::new();
            for _ in 0..3 {
                let next = tokio::time::timeout(Duration::from_secs(1), resend.next(&outgoing));
                order.push(next.await.expect("a message").expect("open").sequence);
            }
            assert_eq!(order, [1, 2, 9], "the failed ones first, oldest first");
            resend.succeeded();
            assert_eq!(resend.pause, RETRY_PAUSE.0);
            drop(hand_over);
            assert!(resend.next(&outgoing).await.is_none());
        });
    }
}
