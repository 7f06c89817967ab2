//! The fleet view: this member's status (what its heartbeats say), every member's as the
//! fleet's status topic says, and each pipeline's figures summed over the live members.

use super::model::{
    AssignedPartition, Fleet, FleetMember, FleetPipelineStats, MemberPipeline, MemberRates,
    MemberStatus, PipelineStats, Rates, RunningSlot,
};
use super::{AppState, stats};
use crate::control::ControlPlane;
use crate::control::fleet::{HEARTBEAT, MEMBER_TIMEOUT, now_ms};
use axum::Json;
use axum::extract::State;

/// This member's status now, with the rates of `sample`.
pub(super) fn member_status(control: &ControlPlane, sample: &[PipelineStats]) -> MemberStatus {
    let member = control.member();
    let pipelines = (control.pipelines().iter())
        .map(|p| {
            let (_, stages) = p.deployed.current();
            let assigned = p.metrics.assigned.lock().unwrap();
            MemberPipeline {
                name: p.name.clone(),
                status: stats::status_of(p),
                partitions: (assigned.iter())
                    .map(|(topic, partition)| AssignedPartition {
                        topic: topic.clone(),
                        partition: *partition,
                    })
                    .collect(),
                rates: (sample.iter().find(|s| s.name == p.name))
                    .map(|s| s.rates)
                    .unwrap_or_default(),
                lag: p.metrics.total_lag(),
                slots: (stages.iter())
                    .map(|s| RunningSlot {
                        module: s.name.clone(),
                        version: s.version,
                    })
                    .collect(),
            }
        })
        .collect();
    MemberStatus {
        id: member.id.clone(),
        address: member.address.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: member.started_at,
        heartbeat_at: now_ms(),
        pipelines,
    }
}

/// Every member, this one (`own`) included, with when each was last heard from, by id.
fn members(control: &ControlPlane, own: MemberStatus) -> Vec<(MemberStatus, i64)> {
    let mut members: Vec<(MemberStatus, i64)> = (control.fleet())
        .map(|fleet| fleet.members.latest())
        .unwrap_or_default()
        .into_iter()
        .filter(|(m, _)| m.id != own.id)
        .collect();
    let at = own.heartbeat_at;
    members.push((own, at));
    members.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    members
}

fn alive(seen: i64, now: i64) -> bool {
    now - seen <= MEMBER_TIMEOUT.as_millis() as i64
}

/// In a fleet, adds to each of `sample`'s pipelines its figures over the live members, and
/// returns this member's status.
pub(super) fn add_fleet_totals(
    control: &ControlPlane,
    sample: &mut [PipelineStats],
) -> MemberStatus {
    let own = member_status(control, sample);
    if control.fleet().is_none() {
        return own;
    }
    let now = now_ms();
    let live: Vec<MemberStatus> = (members(control, own.clone()).into_iter())
        .filter(|(_, seen)| alive(*seen, now))
        .map(|(m, _)| m)
        .collect();
    for stats in sample.iter_mut() {
        stats.fleet = Some(totals(&live, &stats.name));
    }
    own
}

/// Pipeline `name`'s figures summed over `live` members, with each one's share.
fn totals(live: &[MemberStatus], name: &str) -> FleetPipelineStats {
    let mut totals = FleetPipelineStats::default();
    for member in live {
        let Some(p) = member.pipelines.iter().find(|p| p.name == name) else {
            continue;
        };
        totals.rates = Rates {
            input: totals.rates.input + p.rates.input,
            output: totals.rates.output + p.rates.output,
            failed: totals.rates.failed + p.rates.failed,
        };
        totals.lag += p.lag;
        totals.members.push(MemberRates {
            member: member.id.clone(),
            rates: p.rates,
            lag: p.lag,
            partitions: p.partitions.len(),
        });
    }
    totals
}

/// `GET /fleet`.
#[utoipa::path(
    get,
    path = "/fleet",
    summary = "The fleet's members: partitions, rates, lag, what each slot runs, last heartbeat",
    responses((status = 200, description = "Every member heard from; a process running alone is the only one", body = Fleet)),
)]
pub(super) async fn fleet(State(state): State<AppState>) -> Json<Fleet> {
    let control = &state.control;
    let own = member_status(control, &state.stats().pipelines);
    let this = own.id.clone();
    let now = now_ms();
    let members = (members(control, own).into_iter())
        .map(|(status, seen)| FleetMember {
            this_member: status.id == this,
            heartbeat_age_ms: (now - seen).max(0),
            alive: alive(seen, now),
            status,
        })
        .collect();
    Json(Fleet {
        name: control.fleet().map(|f| f.name().to_string()),
        member: this,
        heartbeat_ms: HEARTBEAT.as_millis() as u64,
        member_timeout_ms: MEMBER_TIMEOUT.as_millis() as u64,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, pipeline: &str, input: f64, lag: i64, partitions: i32) -> MemberStatus {
        MemberStatus {
            id: id.into(),
            pipelines: vec![MemberPipeline {
                name: pipeline.into(),
                rates: Rates {
                    input,
                    output: 2.0 * input,
                    failed: 1.0,
                },
                lag,
                partitions: (0..partitions)
                    .map(|partition| AssignedPartition {
                        topic: "in".into(),
                        partition,
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_pipelines_fleet_figures_sum_its_members_and_keep_each_share() {
        let live = [
            member("a", "p", 100.0, 5, 4),
            member("b", "p", 50.0, 7, 8),
            member("c", "other", 1000.0, 1000, 12),
        ];
        let totals = totals(&live, "p");
        assert_eq!(
            (totals.rates.input, totals.rates.output, totals.rates.failed),
            (150.0, 300.0, 2.0)
        );
        assert_eq!(totals.lag, 12);
        let shares: Vec<(&str, usize, i64)> = (totals.members.iter())
            .map(|m| (m.member.as_str(), m.partitions, m.lag))
            .collect();
        assert_eq!(shares, [("a", 4, 5), ("b", 8, 7)]);
    }

    #[test]
    fn members_are_alive_until_three_heartbeats_are_missed() {
        let now = now_ms();
        assert!(alive(now - 5_999, now));
        assert!(!alive(now - 6_001, now));
    }
}
