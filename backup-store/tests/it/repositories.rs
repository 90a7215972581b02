//! Repositories shared across hosts: agents that report the same restic id share a
//! repository, whatever they call it; an exclusive task there waits for every other task on
//! it, a due one holds back new backups (unless its agent is offline), and a policy naming a
//! repository its agent does not report is refused.

use backup_core::{
    AgentId, AttemptOutcome, AttemptReport, ClaimedTask, Heartbeat, PolicySpec, RepositoryIdentity,
    Retention, TaskKind,
};
use backup_store::StoreError;

use crate::harness::{Env, backup_into, store_test};

const SHARED: &str = "5c2a9bb0e1f84a1fb1c0d6a9f3e2d1c0b9a8f7e6d5c4b3a2918273645546372a";

fn reporting(name: &str, id: &str) -> Heartbeat {
    Heartbeat {
        repositories: Some(vec![RepositoryIdentity {
            name: name.into(),
            repository_id: id.into(),
        }]),
        ..Heartbeat::default()
    }
}

async fn claim(env: &Env, agent: AgentId) -> Vec<ClaimedTask> {
    env.claim_all(agent).await
}

async fn finish(env: &Env, agent: AgentId, task: &ClaimedTask) {
    env.store
        .start_task(agent, task.id, task.attempt)
        .await
        .expect("start");
    env.store
        .report_result(
            agent,
            task.id,
            &AttemptReport::new(task.attempt, AttemptOutcome::Succeeded),
        )
        .await
        .expect("result");
}

store_test!(
    an_exclusive_task_waits_for_every_host_and_holds_back_new_backups,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "host-a").await.agent.id;
        let b = env.agent(&t, "host-b").await.agent.id;
        env.heartbeat(a, &reporting("main", SHARED)).await;
        env.heartbeat(b, &reporting("offsite", SHARED)).await;
        let view = env.store.get_agent(t.id, b).await.expect("agent");
        assert_eq!(view.repositories[0].repository_id, SHARED);

        // A repository the agent does not report is refused, naming the ones it does.
        let err = env
            .store
            .create_policy(t.id, &backup_into(a, "typo", "mian"))
            .await
            .expect_err("unknown repository");
        match err {
            StoreError::Validation(e) => {
                assert_eq!(e.field(), Some("repository"));
                assert!(e.to_string().contains("main"), "{e}");
            }
            other => panic!("{other:?}"),
        }

        let backup = env.policy(&t, backup_into(a, "backup", "main")).await;
        let prune = env
            .policy(
                &t,
                PolicySpec {
                    kind: TaskKind::Prune,
                    paths: vec![],
                    retention: Some(Retention {
                        keep_last: Some(1),
                        ..Retention::default()
                    }),
                    ..backup_into(b, "prune", "offsite")
                },
            )
            .await;
        // A's backup runs; B's prune waits for it.
        env.store
            .run_policy_now(t.id, backup.id)
            .await
            .expect("run");
        let running = claim(&env, a).await.remove(0);
        env.store
            .start_task(a, running.id, running.attempt)
            .await
            .expect("start");
        env.store.run_policy_now(t.id, prune.id).await.expect("run");
        assert!(
            claim(&env, b).await.is_empty(),
            "a backup runs on the repository"
        );
        env.store
            .report_result(
                a,
                running.id,
                &AttemptReport::new(running.attempt, AttemptOutcome::Succeeded),
            )
            .await
            .expect("result");
        // The prune runs; a new backup waits for it.
        let pruning = claim(&env, b).await.remove(0);
        assert_eq!(pruning.kind, TaskKind::Prune);
        env.advance_secs(1);
        env.store
            .run_policy_now(t.id, backup.id)
            .await
            .expect("run");
        assert!(
            claim(&env, a).await.is_empty(),
            "the prune holds the repository"
        );
        finish(&env, b, &pruning).await;
        let next = claim(&env, a).await;
        assert_eq!(next.len(), 1, "the backup goes on after the prune");
        env.store
            .start_task(a, next[0].id, next[0].attempt)
            .await
            .expect("start");

        // A due prune is not starved by a stream of backups: the next backup waits for it...
        env.advance_secs(1);
        env.store.run_policy_now(t.id, prune.id).await.expect("run");
        finish(&env, a, &next[0]).await;
        env.advance_secs(1);
        env.store
            .run_policy_now(t.id, backup.id)
            .await
            .expect("run");
        assert!(claim(&env, a).await.is_empty(), "a due prune goes first");
        // ...unless its agent is offline (it would hold the repository for nobody).
        env.advance_secs(181);
        env.online(a).await;
        assert_eq!(
            claim(&env, a).await.len(),
            1,
            "the prune's agent is offline"
        );
    }
);
