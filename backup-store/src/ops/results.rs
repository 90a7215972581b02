//! One attempt's outcome: recorded once per (task, attempt), decided by the retry budget in the
//! same transaction; a late result after "agent lost" is recorded as such.

use super::*;

impl Pools {
    pub(crate) async fn report_result(
        &self,
        ctx: &Ctx,
        agent: AgentId,
        task: TaskId,
        report: &AttemptReport,
    ) -> Result<ResultAnswer> {
        let mut tx = self.write().await?;
        let recorded =
            record_result(&mut tx, ctx, *agent.as_uuid(), *task.as_uuid(), report).await?;
        tx.commit().await?;
        match recorded {
            Recorded::Answer(answer) => Ok(answer),
            Recorded::Stale(view) => Err(StoreError::StaleAttempt(Box::new(view))),
        }
    }
}

/// The outcome of a result inside its transaction; a stale answer still commits what it recorded.
enum Recorded {
    Answer(ResultAnswer),
    Stale(TaskView),
}

/// What is stored of an attempt's run before its result.
#[derive(sqlx::FromRow)]
struct RunState {
    status: String,
    result_at: Option<Ts>,
    answer: Option<String>,
    answer_stale: bool,
}

/// Records one attempt's result, inside the caller's transaction.
async fn record_result(
    tx: &mut Tx,
    ctx: &Ctx,
    agent: Uuid,
    task_id: Uuid,
    report: &AttemptReport,
) -> Result<Recorded> {
    let now = ctx.now();
    let attempt = i32_of(report.attempt);
    let task = task_for_update(tx, task_id, agent).await?;
    let received = Received {
        task: &task,
        attempt,
        report,
        now,
    };
    let run = sqlx::query_as::<_, RunState>(
        "SELECT status, result_at, answer, answer_stale FROM backup_runs WHERE task_id = $1 AND attempt = $2",
    )
    .bind(task_id)
    .bind(attempt)
    .fetch_optional(&mut **tx)
    .await?;

    // A repeat of a result already stored: the answer as it was decided.
    if let Some(run) = &run
        && run.result_at.is_some()
    {
        if run.answer_stale {
            return Ok(Recorded::Stale(task.view()?));
        }
        let task_view: TaskView = match &run.answer {
            Some(a) => from_json("stored answer", a)?,
            None => task.view()?,
        };
        return Ok(Recorded::Answer(ResultAnswer {
            task: task_view,
            retried: false,
            replayed: true,
        }));
    }
    let status = task.status()?;
    let run_status: Option<RunStatus> = match &run {
        Some(r) => Some(crate::rows::parse("run status", &r.status)?),
        None => None,
    };

    // A cancelled task: record what happened, change nothing. When restic finished before the
    // cancel reached it, the attempt succeeded and its snapshot exists: the run says so (a
    // cancelled run with a snapshot would hide data that is there), and the policy counts the
    // success; the task stays cancelled.
    if status == TaskStatus::Cancelled {
        if run.is_none() && task.attempt != attempt {
            return Err(StoreError::Conflict(format!(
                "attempt {attempt} was never claimed"
            )));
        }
        insert_run(tx, ctx, &task, attempt, RunStatus::Cancelled, None).await?;
        let finished_anyway = report.outcome.is_success();
        if finished_anyway {
            let at = report.finished_at.map_or(now, Ts::new);
            protection::task_succeeded(tx, now, at, &task).await?;
        }
        let view = task.view()?;
        write_run(
            tx,
            &received,
            Closing {
                status: if finished_anyway {
                    report.outcome.into()
                } else {
                    RunStatus::Cancelled
                },
                late: false,
                failed_permanently: false,
                answer: Some(&view),
            },
        )
        .await?;
        return Ok(Recorded::Answer(ResultAnswer::decided(view, false)));
    }

    match run_status {
        // The attempt was closed as "agent lost" before this result arrived.
        Some(closed) if closed != RunStatus::Running => {
            let waiting_for_retry = status == TaskStatus::Pending && task.next_retry_at.is_some();
            // A late success resolves a task still waiting for its retry; anything else is
            // recorded and answered as stale.
            let resolves = report.outcome.is_success() && waiting_for_retry;
            let view = if resolves {
                sqlx::query(
                    "UPDATE tasks SET status = 'succeeded', next_retry_at = NULL, lease_expires_at = NULL, \
                     last_error = NULL, updated_at = $2, output = $3 WHERE id = $1",
                )
                .bind(task.id)
                .bind(now)
                .bind((!report.output.is_empty()).then(|| to_json(&report.output)))
                .execute(&mut **tx)
                .await?;
                let at = report.finished_at.map_or(now, Ts::new);
                protection::task_succeeded(tx, now, at, &task).await?;
                Some(task_by_id(tx, task.id).await?.view()?)
            } else {
                None
            };
            write_run(
                tx,
                &received,
                Closing {
                    status: report.outcome.into(),
                    late: true,
                    failed_permanently: false,
                    answer: view.as_ref(),
                },
            )
            .await?;
            return match view {
                Some(view) => Ok(Recorded::Answer(ResultAnswer::decided(view, false))),
                None => Ok(Recorded::Stale(task.view()?)),
            };
        }
        Some(_) => {
            if status != TaskStatus::Running || task.started_attempt != attempt {
                return Err(StoreError::Conflict(format!(
                    "attempt {attempt} is not the running attempt"
                )));
            }
        }
        None => {
            // A result before start (an unknown repository, say) is accepted for the claimed
            // attempt; so is one for a claim whose lease lapsed before the server heard of its
            // start (the task is pending again under the same number, and the agent, which
            // could not report the start, ran it anyway: its snapshot exists).
            let claimed = status == TaskStatus::Claimed
                || (status == TaskStatus::Pending && attempt > task.started_attempt);
            if !claimed || task.attempt != attempt {
                return Err(StoreError::Conflict(format!(
                    "attempt {attempt} was never claimed"
                )));
            }
            insert_run(tx, ctx, &task, attempt, RunStatus::Running, None).await?;
            sqlx::query("UPDATE tasks SET started_attempt = $2 WHERE id = $1")
                .bind(task.id)
                .bind(attempt)
                .execute(&mut **tx)
                .await?;
        }
    }

    let mut retried = false;
    let mut failed_permanently = false;
    match report.outcome {
        // Done, or handed back without spending budget (a shutdown, a backoff).
        outcome @ (AttemptOutcome::Succeeded
        | AttemptOutcome::Partial
        | AttemptOutcome::Interrupted) => {
            let status = if outcome == AttemptOutcome::Interrupted {
                TaskStatus::Pending
            } else {
                TaskStatus::Succeeded
            };
            // What a restore restored or a listing listed stays with the task.
            let output = (status == TaskStatus::Succeeded && !report.output.is_empty())
                .then(|| to_json(&report.output));
            sqlx::query(
                "UPDATE tasks SET status = $4, next_retry_at = NULL, lease_expires_at = NULL, \
                 last_error = $2, updated_at = $3, output = COALESCE($5, output) WHERE id = $1",
            )
            .bind(task.id)
            .bind(report.error.as_deref())
            .bind(now)
            .bind(status.as_str())
            .bind(output)
            .execute(&mut **tx)
            .await?;
            if status == TaskStatus::Succeeded {
                let at = report.finished_at.map_or(now, Ts::new);
                protection::task_succeeded(tx, now, at, &task).await?;
            }
        }
        _ => {
            let class = report.error_kind.unwrap_or(ErrorClass::Retriable);
            let settings = agent_settings(tx, task.agent_id).await?;
            let decision = decide(ctx, &task, &settings, class);
            retried = apply_failure(tx, &task, decision, report.error.as_deref(), now).await?;
            failed_permanently = !retried;
            if failed_permanently {
                let reason = task_by_id(tx, task.id)
                    .await?
                    .permanent_reason
                    .unwrap_or_default();
                protection::task_failed_permanently(
                    tx,
                    now,
                    &task,
                    &reason,
                    report.error.as_deref(),
                    backup_core::Actor::Agent,
                )
                .await?;
            }
        }
    }
    let view = task_by_id(tx, task.id).await?.view()?;
    write_run(
        tx,
        &received,
        Closing {
            status: report.outcome.into(),
            late: false,
            failed_permanently,
            answer: Some(&view),
        },
    )
    .await?;
    Ok(Recorded::Answer(ResultAnswer::decided(view, retried)))
}

/// One attempt's result as it arrived: the task it is for, the attempt, the report, when.
struct Received<'a> {
    task: &'a TaskRow,
    attempt: i32,
    report: &'a AttemptReport,
    now: Ts,
}

/// How the run of an attempt is closed.
struct Closing<'a> {
    status: RunStatus,
    /// The attempt had been closed as "agent lost" before.
    late: bool,
    failed_permanently: bool,
    /// The task view answered (None: a stale answer).
    answer: Option<&'a TaskView>,
}

/// Fills a run with the agent's result.
async fn write_run(tx: &mut Tx, received: &Received<'_>, closing: Closing<'_>) -> Result<()> {
    let Received {
        task,
        attempt,
        report,
        now,
    } = *received;
    let Closing {
        status,
        late,
        failed_permanently,
        answer,
    } = closing;
    let duration_ms = match (report.started_at, report.finished_at) {
        (Some(s), Some(f)) => Some((f - s).num_milliseconds().max(0)),
        _ => None,
    };
    let error_kind = match report.outcome {
        AttemptOutcome::Failed => Some(class_name(
            report.error_kind.unwrap_or(ErrorClass::Retriable),
        )),
        _ => None,
    };
    sqlx::query(
        "UPDATE backup_runs SET status = $3, started_at = COALESCE($4, started_at), \
         finished_at = COALESCE($5, $12), snapshot_id = $6, files_new = $7, data_added = $8, \
         duration_ms = $9, exit_code = $10, error = $11, error_kind = $13, late = $14, \
         failed_permanently = (failed_permanently OR $15), result_at = $12, answer = $16, \
         answer_stale = $17 WHERE task_id = $1 AND attempt = $2",
    )
    .bind(task.id)
    .bind(attempt)
    .bind(status.as_str())
    .bind(report.started_at.map(Ts::new))
    .bind(report.finished_at.map(Ts::new))
    .bind(report.snapshot_id.as_deref())
    .bind(i64_of(report.files_new))
    .bind(i64_of(report.data_added))
    .bind(duration_ms)
    .bind(report.exit_code)
    .bind(report.error.as_deref())
    .bind(now)
    .bind(error_kind)
    .bind(late)
    .bind(failed_permanently)
    .bind(answer.map(to_json))
    .bind(answer.is_none())
    .execute(&mut **tx)
    .await?;
    if matches!(
        status,
        RunStatus::Succeeded | RunStatus::Partial | RunStatus::Failed
    ) {
        let at = report.finished_at.map_or(now, Ts::new);
        note_policy_run(tx, task.policy_id, status, at).await?;
    }
    Ok(())
}
