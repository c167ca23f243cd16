//! Tasks on a shared instance belong to the session whose request created them.
//!
//! A shared server keeps one task store for every session. berth records the `taskId` of each
//! task-creating answer to a `tools/call` (`result.task.taskId`) under the session whose
//! request it answers;
//! `tasks/list` answers keep only that session's tasks, `tasks/get`, `tasks/result` and
//! `tasks/cancel` of another session's task get the error of an unknown task without reaching
//! the server, and `notifications/tasks/status` goes only to the owner.

use bytes::Bytes;
use serde_json::Value;

use super::session::Session;
use std::ops::Range;

use crate::jsonrpc::{self, INVALID_PARAMS, Message};

/// The methods that name a task in `params.taskId`.
const TASK_METHODS: [&str; 3] = ["tasks/get", "tasks/result", "tasks/cancel"];

/// The refusal of a request on a task `session` did not create, if `message` is one.
pub(crate) fn refusal(session: &Session, message: &Message) -> Option<Bytes> {
    let method = message.method()?;
    if !session.is_shared() || !TASK_METHODS.contains(&&*method) {
        return None;
    }
    let task = message.find_str(&["params", "taskId"])?;
    if session.owns_task(&task) {
        return None;
    }
    let id = message.id().unwrap_or("null");
    Some(jsonrpc::error(id.as_bytes(), INVALID_PARAMS, &format!("Failed to retrieve task: Task not found: {task}")))
}

/// The answer to `session`'s request `method`, with the client's id (`client_id`) in place of
/// berth's (at `span`): a task a tool call created is recorded; a task list keeps the
/// session's own.
pub(crate) fn answer_for(
    session: &Session,
    method: &str,
    message: &Message,
    span: Range<usize>,
    client_id: &Bytes,
) -> Bytes {
    // Tasks are created by tool calls; other answers are not searched for one.
    if method == "tools/call"
        && let Some(task) = message.find_str(&["result", "task", "taskId"])
    {
        session.own_task(&task);
    }
    if method != "tasks/list" {
        return message.splice(&mut [(span, client_id)]);
    }
    let result = message.find(&["result"]).and_then(|at| serde_json::from_str::<Value>(message.raw(&at)).ok());
    let Some(mut result) = result.filter(|result| result.get("tasks").is_some_and(Value::is_array)) else {
        return message.splice(&mut [(span, client_id)]);
    };
    if let Some(tasks) = result.get_mut("tasks").and_then(Value::as_array_mut) {
        tasks.retain(|task| task.get("taskId").and_then(Value::as_str).is_some_and(|id| session.owns_task(id)));
    }
    // The client's id goes back byte for byte, as everywhere else.
    jsonrpc::result(client_id, &result.to_string())
}
