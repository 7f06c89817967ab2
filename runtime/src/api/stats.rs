//! Per-pipeline rates, sampled once a second from the pipelines' counters, for the pipeline list
//! and the live feed (`GET /api/v1/events`, Server-Sent Events).

use super::AppState;
use super::model::{PipelineStats, Rates, StateStats, Stats, Status, Swaps, Totals};
use crate::control::ControlPlane;
use crate::control::fleet::HEARTBEAT;
use crate::pipeline::metrics::PipelineMetrics;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often rates are sampled and the live feed ticks.
const PERIOD: Duration = Duration::from_secs(1);

impl Totals {
    /// The totals of `m` now.
    pub fn read(m: &PipelineMetrics) -> Self {
        Totals {
            input: m.consumed.total(),
            output: m.produced.total(),
            failed: m.failed.total(),
            dead_letters: m.dead_lettered.load(Relaxed),
        }
    }
}

impl Swaps {
    /// The swaps of `m` so far.
    pub fn read(m: &PipelineMetrics) -> Self {
        Swaps {
            count: m.swaps.load(Relaxed),
            max_pause_ms: m.swap_pause_max_us.load(Relaxed) as f64 / 1e3,
        }
    }
}

/// Counter values at one instant.
#[derive(Clone, Copy, Default)]
struct Counters {
    input: u64,
    output: u64,
    failed: u64,
    batches: u64,
    latency_us: u64,
}

impl Counters {
    fn read(m: &PipelineMetrics) -> Self {
        Counters {
            input: m.consumed.total(),
            output: m.produced.total(),
            failed: m.failed.total(),
            batches: m.batches.load(Relaxed),
            latency_us: m.batch_latency_us_sum.load(Relaxed),
        }
    }
}

/// Samples every [`PERIOD`] until every receiver is gone.
pub(super) fn start_sampling(control: Arc<ControlPlane>) -> watch::Receiver<Arc<Stats>> {
    let (sender, receiver) = watch::channel(Arc::new(Stats::default()));
    tokio::spawn(async move {
        let mut previous: Vec<Counters> = Vec::new();
        let mut last = Instant::now();
        let mut last_heartbeat = Instant::now() - HEARTBEAT;
        let mut tick = tokio::time::interval(PERIOD);
        loop {
            tick.tick().await;
            let elapsed = last.elapsed().as_secs_f64().max(1e-3);
            last = Instant::now();
            let pipelines = control.pipelines();
            previous.resize(pipelines.len(), Counters::default());
            let mut stats = pipelines
                .iter()
                .zip(previous.iter_mut())
                .map(|(p, before)| {
                    let now = Counters::read(&p.metrics);
                    let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / elapsed;
                    let batches = now.batches.saturating_sub(before.batches);
                    let latency = now.latency_us.saturating_sub(before.latency_us);
                    let stats = PipelineStats {
                        name: p.name.clone(),
                        status: status_of(p),
                        rates: Rates {
                            input: rate(now.input, before.input),
                            output: rate(now.output, before.output),
                            failed: rate(now.failed, before.failed),
                        },
                        lag: p.metrics.total_lag(),
                        batch_latency_ms: if batches == 0 {
                            0.0
                        } else {
                            latency as f64 / batches as f64 / 1e3
                        },
                        totals: Totals::read(&p.metrics),
                        swaps: Swaps::read(&p.metrics),
                        state: StateStats::read(&p.metrics),
                        fleet: None,
                    };
                    *before = now;
                    stats
                })
                .collect::<Vec<_>>();
            let own = super::fleet::add_fleet_totals(&control, &mut stats);
            if let Some(fleet) = control.fleet()
                && last_heartbeat.elapsed() + PERIOD / 2 >= HEARTBEAT
            {
                fleet.heartbeat(&own);
                last_heartbeat = Instant::now();
            }
            let time = chrono::Utc::now().timestamp_millis();
            if sender
                .send(Arc::new(Stats {
                    time,
                    pipelines: stats,
                }))
                .is_err()
            {
                return;
            }
        }
    });
    receiver
}

/// The status of a pipeline, `paused` included.
pub(super) fn status_of(p: &crate::pipeline::Pipeline) -> Status {
    use crate::pipeline::metrics::Status as Running;
    match p.metrics.status() {
        Running::Running if p.paused.load(Relaxed) => Status::Paused,
        Running::Starting => Status::Starting,
        Running::Running => Status::Running,
        Running::Stopping => Status::Stopping,
        Running::Stopped => Status::Stopped,
        Running::Failed(_) => Status::Failed,
    }
}

impl AppState {
    /// The latest sample.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.borrow().clone()
    }
}

/// `GET /api/v1/events`: a `stats` event with every new sample.
#[utoipa::path(
    get,
    path = "/events",
    summary = "Live feed: a `stats` Server-Sent Event about once a second",
    responses(
        (status = 200, description = "text/event-stream; each event's data is a Stats object",
            content_type = "text/event-stream", body = Stats),
    ),
)]
pub(super) async fn events(
    State(state): State<AppState>,
) -> Sse<impl futures::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let mut receiver = state.stats.clone();
    // The first event goes out at once, with the latest sample.
    receiver.mark_changed();
    // The stream ends when the server stops, so that a connected dashboard does not hold up
    // a graceful stop.
    let closing = state.closing.clone();
    let stream = futures::stream::unfold(
        (receiver, closing),
        |(mut receiver, mut closing)| async move {
            tokio::select! {
                changed = receiver.changed() => changed.ok()?,
                _ = closing.wait_for(|closing| *closing) => return None,
            }
            let stats = receiver.borrow_and_update().clone();
            let event = Event::default()
                .event("stats")
                .json_data(&*stats)
                .unwrap_or_else(|_| Event::default());
            Some((Ok(event), (receiver, closing)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}
