//! Tasks on a shared instance belong to their session: with server-everything shared by Alice
//! and Bob, Alice's task-augmented `simulate-research-query` creates a task that Bob does not
//! see in `tasks/list` and cannot get, read or cancel (the error of an unknown task), while
//! Alice can.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    everything::{PROCESS_ROUTES, process_config},
    harness::{Berth, PASSWORD, USER, basic, http},
    requests::{ACCEPT_BOTH, McpHeaders, initialize, initialized},
};

/// A raw session of one user.
struct User {
    authorization: String,
    session: String,
    url: String,
}

impl User {
    async fn open(url: &str, user: &str, password: &str) -> Self {
        let mut this = Self { authorization: basic(user, password), session: String::new(), url: url.to_string() };
        let (status, session, _) = this.post(initialize("2025-11-25")).await;
        assert_eq!(status, StatusCode::OK);
        this.session = session.unwrap();
        this.post(initialized()).await;
        this
    }

    /// POSTs `body`: status, the session id opened, the answer (JSON or the SSE event with an id).
    async fn post(&self, body: Value) -> (StatusCode, Option<String>, Value) {
        let mut request = http()
            .post(&self.url)
            .header("authorization", &self.authorization)
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .protocol("2025-11-25");
        if !self.session.is_empty() {
            request = request.session(&self.session);
        }
        let response = request.body(body.to_string()).send().await.unwrap();
        let status = response.status();
        let opened = response.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_string());
        let text = response.text().await.unwrap();
        let answer = serde_json::from_str(&text).ok().or_else(|| {
            text.lines()
                .filter_map(|line| serde_json::from_str::<Value>(line.strip_prefix("data:")?.trim()).ok())
                .find(|message| message.get("id").is_some())
        });
        (status, opened, answer.unwrap_or(Value::Null))
    }

    async fn call(&self, id: i64, method: &str, params: Value) -> Value {
        self.post(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await.2
    }
}

fn task_ids(list: &Value) -> Vec<String> {
    list["result"]["tasks"].as_array().map_or_else(Vec::new, |tasks| {
        tasks.iter().filter_map(|task| task["taskId"].as_str().map(str::to_owned)).collect()
    })
}

#[tokio::test]
async fn a_shared_servers_tasks_are_seen_only_by_the_session_that_created_them() {
    let config = format!("[[auth.users]]\nname = \"bob\"\npassword = \"bob-pw\"\n\n{}", process_config());
    let berth = Berth::start(&config).await;
    let url = berth.mcp_url(PROCESS_ROUTES[0]);
    let alice = User::open(&url, USER, PASSWORD).await;
    let bob = User::open(&url, "bob", "bob-pw").await;

    let created = alice
        .call(
            2,
            "tools/call",
            json!({"name": "simulate-research-query", "arguments": {"topic": "rust"}, "task": {"ttl": 60000}}),
        )
        .await;
    let task = created["result"]["task"]["taskId"].as_str().unwrap_or_else(|| panic!("no task created: {created}"));

    let alices = alice.call(3, "tasks/list", json!({})).await;
    assert!(task_ids(&alices).contains(&task.to_string()), "alice sees her task: {alices}");
    let bobs = bob.call(3, "tasks/list", json!({})).await;
    assert!(bobs["result"]["tasks"].is_array() && !task_ids(&bobs).contains(&task.to_string()), "{bobs}");
    for (id, method) in [(4, "tasks/get"), (5, "tasks/result"), (6, "tasks/cancel")] {
        let refused = bob.call(id, method, json!({"taskId": task})).await;
        assert_eq!(
            (refused["id"].as_i64(), refused["error"]["code"].as_i64()),
            (Some(id), Some(-32602)),
            "{method}: {refused}"
        );
    }
    let got = alice.call(7, "tasks/get", json!({"taskId": task})).await;
    assert_eq!(got["result"]["taskId"], task, "{got}");
    let cancelled = alice.call(8, "tasks/cancel", json!({"taskId": task})).await;
    assert!(cancelled.get("result").is_some(), "alice cancels her task: {cancelled}");
    berth.stop().await;
}
