//! SEP-2243 `Mcp-Param-*` headers: a tool's `inputSchema` may mark properties with
//! `x-mcp-header: "Name"`, 2026-07-28 clients then mirror those arguments of a `tools/call`
//! into `Mcp-Param-Name` headers, and any server that reads the body must check that the
//! headers agree with it, as it does for `Mcp-Method` and `Mcp-Name` (`mcp_headers.rs`).
//! berth reads every body, so it checks them here, the same way for every kind of backend:
//! a disagreement gets 400 with JSON-RPC error -32020 before the backend sees the call.
//!
//! The annotations live in the backend's tool list, so berth learns them:
//!
//! - from the 2026-07-28 `tools/list` answers that pass through it (JSON or SSE, read as they
//!   stream by, bounded), when they hold the whole list (no cursor, no `nextCursor`);
//! - and, when a 2026-07-28 `tools/call` arrives while nothing is known, by asking the backend
//!   itself: a stateless `tools/list` through the same inner service, every page, bounded;
//!   calls that miss at the same time wait for that one fetch.
//!
//! What is learnt is cached per backend in [`ToolSchemas`], and dropped when a
//! `notifications/tools/list_changed` goes by on any SSE stream of that backend (the bytes are
//! scanned, nothing is parsed) or when the stdio relay calls [`ToolSchemas::invalidate`].
//!
//! Requests of older protocol versions are not checked and their bodies are not parsed; their
//! SSE answers are only scanned for `list_changed`. A tool whose annotations break the
//! constraints of the spec (primitive types only, reachable through `properties` alone,
//! case-insensitively unique HTTP tokens) is not used for validation, and neither is an
//! unknown tool: the backend answers those calls itself. `Mcp-Param-*` headers that the tool
//! does not declare are passed on and ignored, as the spec asks of intermediaries.

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use serde_json::{Number, Value, json};
use tower::{Layer, Service, ServiceExt};

use crate::sse_event::{event_end, event_message};
use crate::{
    body::{RequestBody, ResponseBody, request_body},
    extensions::{ParsedBody, Target},
    jsonrpc::HEADER_MISMATCH,
    mcp_headers::{self, PROTOCOL_VERSION_HEADER, STANDARD_HEADERS_VERSION},
    reply::Rejection,
};

/// The schema keyword that marks a mirrored parameter.
const ANNOTATION: &str = "x-mcp-header";
/// What every mirrored header's name starts with (header names are lowercase in `http`).
const HEADER_PREFIX: &str = "mcp-param-";
/// The media type of SSE answers, the only ones that can carry notifications.
const EVENT_STREAM: &str = "text/event-stream";
/// The notification that makes a cached tool list stale.
const LIST_CHANGED: &[u8] = b"notifications/tools/list_changed";
/// The most bytes of `tools/list` answers read for one list, all pages together: larger
/// lists are not cached (and their calls go unvalidated) rather than held in memory.
const MAX_LIST_BYTES: usize = 4 << 20;
/// The most pages berth follows when it lists the tools itself.
const MAX_PAGES: usize = 32;
/// How long a call waits for berth's own `tools/list` before it is forwarded unvalidated.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How many invalid tool names a backend's cache remembers having warned about.
const MAX_WARNED: usize = 1024;

/// One mirrored parameter of a tool: where its value sits in the arguments and which header
/// carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HeaderParam {
    /// The annotation as written (`Region`), for messages.
    name: String,
    /// `mcp-param-region`.
    header: HeaderName,
    /// The chain of property names from the arguments object to the value.
    path: Vec<String>,
}

/// The mirrored parameters of a backend's tools, for the tools that have valid annotations.
#[derive(Debug, Default)]
pub(crate) struct Catalogue {
    tools: HashMap<String, Vec<HeaderParam>>,
}

/// A moment in the life of a [`ToolSchemas`]: a list read since then may be cached only if no
/// invalidation came in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Epoch(u64);

/// The cache proper: the current epoch and the catalogue read in it, if any.
#[derive(Debug, Default)]
struct Cached {
    epoch: u64,
    catalogue: Option<Arc<Catalogue>>,
}

/// The cached tool annotations of one backend, shared by every request to it.
#[derive(Debug)]
pub(crate) struct ToolSchemas {
    backend: String,
    cached: Mutex<Cached>,
    /// Held while berth lists the tools itself, so that concurrent misses share one fetch.
    fetching: tokio::sync::Mutex<()>,
    /// Tools already reported as invalid, so that each is logged once.
    warned: Mutex<HashSet<String>>,
}

/// Locks `mutex`, poisoned or not.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so a panic elsewhere is no reason
    // to stop validating.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ToolSchemas {
    /// An empty cache for backend `backend` (the name is for logs).
    pub(crate) fn new(backend: &str) -> Self {
        Self {
            backend: backend.to_string(),
            cached: Mutex::default(),
            fetching: tokio::sync::Mutex::new(()),
            warned: Mutex::default(),
        }
    }

    /// What is cached, if anything.
    pub(crate) fn get(&self) -> Option<Arc<Catalogue>> {
        lock(&self.cached).catalogue.clone()
    }

    /// Now, to be handed to [`Self::replace`] with a list read from here on.
    pub(crate) fn epoch(&self) -> Epoch {
        Epoch(lock(&self.cached).epoch)
    }

    /// Builds the catalogue of `tools` (a complete `tools/list` result's `tools`) and caches it
    /// unless the list changed since `seen`; answers the catalogue either way.
    pub(crate) fn replace(&self, seen: Epoch, tools: &[Value]) -> Arc<Catalogue> {
        let catalogue = Arc::new(self.build(tools));
        let mut cached = lock(&self.cached);
        if cached.epoch == seen.0 {
            cached.catalogue = Some(Arc::clone(&catalogue));
        }
        catalogue
    }

    /// Forgets the list: the backend said it changed.
    pub(crate) fn invalidate(&self) {
        let mut cached = lock(&self.cached);
        cached.epoch += 1;
        cached.catalogue = None;
    }

    /// The cached catalogue, or the one `fetch` lists (cached too), fetched once for all the
    /// callers that miss together; `None` when the fetch failed.
    async fn get_or_fetch(&self, fetch: impl Future<Output = Option<Vec<Value>>>) -> Option<Arc<Catalogue>> {
        if let Some(catalogue) = self.get() {
            return Some(catalogue);
        }
        let _one_fetch = self.fetching.lock().await;
        if let Some(catalogue) = self.get() {
            return Some(catalogue);
        }
        let seen = self.epoch();
        let tools = fetch.await?;
        Some(self.replace(seen, &tools))
    }

    /// The catalogue of a tool list, with a warning for each tool whose annotations are invalid.
    fn build(&self, tools: &[Value]) -> Catalogue {
        let mut catalogue = Catalogue::default();
        for tool in tools {
            let Some(name) = tool.get("name").and_then(Value::as_str) else { continue };
            match header_params(tool.get("inputSchema").unwrap_or(&Value::Null)) {
                Ok(params) if params.is_empty() => {}
                Ok(params) => {
                    catalogue.tools.insert(name.to_string(), params);
                }
                Err(reason) => self.warn_once(name, &reason),
            }
        }
        catalogue
    }

    /// Logs an invalid tool, once per tool name (up to [`MAX_WARNED`] names).
    fn warn_once(&self, tool: &str, reason: &str) {
        let mut warned = lock(&self.warned);
        if warned.len() < MAX_WARNED && warned.insert(tool.to_string()) {
            tracing::warn!(
                backend = self.backend,
                tool,
                reason,
                "tool has invalid x-mcp-header annotations; its Mcp-Param-* headers are not validated"
            );
        }
    }
}

/// RFC 9110 `tchar`: what a header field name is made of.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Whether a property's `type` is one a header can mirror: `string`, `integer` or `boolean`,
/// possibly made nullable (`["string", "null"]`); `number` is excluded by the spec.
fn is_primitive(kind: Option<&Value>) -> bool {
    let primitive = |kind: &str| matches!(kind, "string" | "integer" | "boolean");
    match kind {
        Some(Value::String(kind)) => primitive(kind),
        Some(Value::Array(kinds)) => {
            let mut named = kinds.iter().filter(|kind| kind.as_str() != Some("null"));
            matches!((named.next(), named.next()), (Some(Value::String(kind)), None) if primitive(kind))
        }
        _ => false,
    }
}

/// The parameter an annotation found at `path` describes, or why the annotation is invalid.
fn annotated(annotation: &Value, property: &Value, path: &[String]) -> Result<HeaderParam, String> {
    let name = annotation.as_str().ok_or_else(|| format!("{ANNOTATION} at `{}` is not a string", path.join(".")))?;
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(format!("{ANNOTATION} `{name}` is not an HTTP field-name token"));
    }
    if !is_primitive(property.get("type")) {
        return Err(format!("{ANNOTATION} `{name}` is on a parameter whose type is not string, integer or boolean"));
    }
    let header = HeaderName::from_bytes(format!("{HEADER_PREFIX}{name}").as_bytes())
        .map_err(|_| format!("{ANNOTATION} `{name}` does not make a header name"))?;
    Ok(HeaderParam { name: name.to_string(), header, path: path.to_vec() })
}

/// Collects the annotations statically reachable from `schema`: through chains of
/// `properties` keys only.
fn collect(schema: &Value, path: &mut Vec<String>, found: &mut Vec<HeaderParam>) -> Result<(), String> {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return Ok(()) };
    for (key, property) in properties {
        path.push(key.clone());
        if let Some(annotation) = property.get(ANNOTATION) {
            found.push(annotated(annotation, property, path)?);
        }
        collect(property, path, found)?;
        path.pop();
    }
    Ok(())
}

/// Counts the annotations anywhere in `schema`: keys of maps of subschemas are names, not
/// keywords, and the values of data keywords are instances, not schemas.
fn annotations_in(schema: &Value) -> usize {
    match schema {
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| match key.as_str() {
                ANNOTATION => 1,
                "const" | "enum" | "default" | "examples" => 0,
                "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas" => {
                    value.as_object().map_or(0, |subschemas| subschemas.values().map(annotations_in).sum())
                }
                _ => annotations_in(value),
            })
            .sum(),
        Value::Array(items) => items.iter().map(annotations_in).sum(),
        _ => 0,
    }
}

/// The mirrored parameters of an input schema, or why its annotations make the tool invalid.
fn header_params(schema: &Value) -> Result<Vec<HeaderParam>, String> {
    let mut found = Vec::new();
    collect(schema, &mut Vec::new(), &mut found)?;
    if annotations_in(schema) != found.len() {
        return Err(format!("an {ANNOTATION} annotation is not reachable from the root through `properties` alone"));
    }
    let mut seen = HashSet::new();
    if let Some(twice) = found.iter().find(|param| !seen.insert(&param.header)) {
        return Err(format!("{ANNOTATION} `{}` is not unique (names are case-insensitive)", twice.name));
    }
    Ok(found)
}

/// The value at `path` inside `arguments`, if there is one.
fn value_at<'a>(arguments: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(arguments, |value, key| value.as_object()?.get(key))
}

/// Whether a header number and a body number are equal as numbers (`42`, `42.0`).
fn same_number(header: &str, body: &Number) -> bool {
    let Ok(header) = serde_json::from_str::<Number>(header) else { return false };
    if let (Some(a), Some(b)) = (header.as_i64(), body.as_i64()) {
        return a == b;
    }
    if let (Some(a), Some(b)) = (header.as_u64(), body.as_u64()) {
        return a == b;
    }
    header.as_f64().zip(body.as_f64()).is_some_and(|(a, b)| a == b)
}

/// Whether a decoded header value mirrors `value` (a string as is, an integer in decimal, a
/// boolean as `true`/`false`).
fn mirrors(header: &str, value: &Value) -> bool {
    match value {
        Value::String(text) => header == text,
        Value::Number(number) => same_number(header, number),
        Value::Bool(flag) => header == if *flag { "true" } else { "false" },
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

/// Checks the mirrored headers of one call; `Err` carries the reason for the -32020 error.
fn check(headers: &HeaderMap, params: &[HeaderParam], arguments: Option<&Value>) -> Result<(), String> {
    for param in params {
        let value = arguments.and_then(|arguments| value_at(arguments, &param.path)).filter(|value| !value.is_null());
        let raw = mcp_headers::single(headers, param.header.as_str())?;
        let (name, path) = (&param.name, param.path.join("."));
        match (value, raw) {
            (None, None) => {}
            (Some(_), None) => return Err(format!("missing Mcp-Param-{name} header for argument `{path}`")),
            (None, Some(_)) => {
                return Err(format!("Mcp-Param-{name} header is set but argument `{path}` has no value"));
            }
            (Some(value), Some(raw)) => {
                let decoded =
                    mcp_headers::decode(raw).ok_or_else(|| format!("Mcp-Param-{name} header is not valid Base64"))?;
                if !mirrors(&decoded, value) {
                    return Err(format!("Mcp-Param-{name} header `{decoded}` does not match argument `{path}`"));
                }
            }
        }
    }
    Ok(())
}

/// Finds a lone JSON-RPC answer with a given id in a JSON or SSE body read piece by piece,
/// within a byte budget.
struct Reader {
    sse: bool,
    id: Value,
    buffer: BytesMut,
    /// How far the buffer has been searched for the end of an event.
    searched: usize,
    budget: usize,
    overflowed: bool,
}

impl Reader {
    /// A reader of a JSON (`sse` false) or SSE body for the answer to request `id`, reading at
    /// most `budget` bytes.
    fn new(sse: bool, id: Value, budget: usize) -> Self {
        Self { sse, id, buffer: BytesMut::new(), searched: 0, budget, overflowed: false }
    }

    /// Whether `message` is the response to the request.
    fn is_answer(&self, message: &Value) -> bool {
        message.get("id") == Some(&self.id)
            && message.get("method").is_none()
            && (message.get("result").is_some() || message.get("error").is_some())
    }

    /// Takes the next piece; answers the message once an SSE event holds it.
    fn push(&mut self, data: &[u8]) -> Option<Value> {
        if self.overflowed {
            return None;
        }
        if data.len() > self.budget {
            self.overflowed = true;
            self.buffer = BytesMut::new();
            return None;
        }
        self.budget -= data.len();
        self.buffer.extend_from_slice(data);
        while self.sse {
            // A separator may straddle two pieces: search again from its possible start.
            let Some((text_end, next)) = event_end(&self.buffer, self.searched.saturating_sub(3)) else {
                self.searched = self.buffer.len();
                return None;
            };
            let event = self.buffer.split_to(next);
            self.searched = 0;
            if let Some(message) = event_message(&event[..text_end]).filter(|message| self.is_answer(message)) {
                return Some(message);
            }
        }
        None
    }

    /// The body ended: the JSON answer, or an SSE event left without its closing blank line.
    fn finish(&mut self) -> Option<Value> {
        if self.overflowed {
            return None;
        }
        let rest = std::mem::take(&mut self.buffer);
        let message = if self.sse { event_message(&rest) } else { serde_json::from_slice(&rest).ok() };
        message.filter(|message| self.is_answer(message))
    }

    /// Whether the body went over the budget (and the reader gave up).
    fn overflowed(&self) -> bool {
        self.overflowed
    }
}

/// Looks for [`LIST_CHANGED`] in a stream of byte pieces, across their seams.
#[derive(Debug, Default)]
struct Scanner {
    tail: Vec<u8>,
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

impl Scanner {
    /// Whether the notification's name ends in `data` (or in the seam before it).
    fn saw(&mut self, data: &[u8]) -> bool {
        let keep = LIST_CHANGED.len() - 1;
        let mut seam = std::mem::take(&mut self.tail);
        seam.extend_from_slice(&data[..data.len().min(keep)]);
        let found = contains(&seam, LIST_CHANGED) || contains(data, LIST_CHANGED);
        self.tail = if data.len() >= keep {
            data[data.len() - keep..].to_vec()
        } else {
            seam[seam.len().saturating_sub(keep)..].to_vec()
        };
        found
    }
}

/// A client's `tools/list` whose answer may fill the cache.
struct Pending {
    id: Value,
    seen: Epoch,
}

/// A response body watched on its way to the client: SSE streams for `list_changed`, and the
/// answer to a complete `tools/list` for the cache.
struct Watched {
    inner: ResponseBody,
    schemas: Arc<ToolSchemas>,
    scanner: Option<Scanner>,
    capture: Option<(Reader, Epoch)>,
}

impl Watched {
    /// Ends the capture: caches the tools of a whole list, if `answer` is one.
    fn learn(&mut self, answer: Option<Value>) {
        let Some((_, seen)) = self.capture.take() else { return };
        let Some(result) = answer.as_ref().and_then(|answer| answer.get("result")) else { return };
        if result.get("nextCursor").is_none_or(Value::is_null)
            && let Some(tools) = result.get("tools").and_then(Value::as_array)
        {
            self.schemas.replace(seen, tools);
        }
    }
}

impl Body for Watched {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if this.scanner.as_mut().is_some_and(|scanner| scanner.saw(data)) {
                        this.schemas.invalidate();
                    }
                    if let Some((reader, _)) = &mut this.capture
                        && let Some(answer) = reader.push(data)
                    {
                        this.learn(Some(answer));
                    }
                }
                // hyper stops polling a body that says it has ended, so the end is seen here.
                if this.inner.is_end_stream()
                    && let Some((reader, _)) = &mut this.capture
                {
                    let answer = reader.finish();
                    this.learn(answer);
                }
            }
            Poll::Ready(None) => {
                if let Some((reader, _)) = &mut this.capture {
                    let answer = reader.finish();
                    this.learn(answer);
                }
            }
            Poll::Ready(Some(Err(never))) => match *never {},
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a response is an SSE stream.
fn is_event_stream(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).is_some_and(|value| {
        value.get(..EVENT_STREAM.len()).is_some_and(|essence| essence.eq_ignore_ascii_case(EVENT_STREAM))
    })
}

/// Wraps the body when there is something to watch in it; JSON answers to anything but
/// `tools/list` pass as they are.
fn watch(
    response: Response<ResponseBody>,
    schemas: Arc<ToolSchemas>,
    pending: Option<Pending>,
) -> Response<ResponseBody> {
    let sse = is_event_stream(response.headers());
    let capture = pending
        .filter(|_| response.status().is_success())
        .map(|pending| (Reader::new(sse, pending.id, MAX_LIST_BYTES), pending.seen));
    if !sse && capture.is_none() {
        return response;
    }
    response.map(|inner| Watched { inner, schemas, scanner: sse.then(Scanner::default), capture }.boxed())
}

/// What berth's own `tools/list` requests take from the call that needs them.
struct ListRequest {
    uri: Uri,
    host: Option<HeaderValue>,
    version: HeaderValue,
    target: Target,
}

impl ListRequest {
    /// The request carrying `message` to the backend.
    fn build(&self, message: &Value) -> Request<RequestBody> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header(header::CONTENT_TYPE, "application/json")
            .header(PROTOCOL_VERSION_HEADER, self.version.clone())
            .header("mcp-method", "tools/list")
            .body(request_body(message.to_string()))
            .expect("a request from valid parts");
        if let Some(host) = &self.host {
            request.headers_mut().insert(header::HOST, host.clone());
        }
        request.extensions_mut().insert(self.target.clone());
        request
    }
}

/// Lists every tool of the backend, page by page, as a stateless 2026-07-28 client would.
async fn list_tools<S>(inner: S, template: &ListRequest) -> Result<Vec<Value>, String>
where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>, Error = Infallible> + Clone,
{
    let version = template.version.to_str().unwrap_or(STANDARD_HEADERS_VERSION);
    let mut tools = Vec::new();
    let mut cursor: Option<Value> = None;
    let mut budget = MAX_LIST_BYTES;
    for page in 0..MAX_PAGES {
        let id = Value::from(format!("berth-tools-list-{page}"));
        let mut params = json!({"_meta": {
            "io.modelcontextprotocol/protocolVersion": version,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "berth", "version": env!("CARGO_PKG_VERSION")},
        }});
        if let (Some(cursor), Some(object)) = (cursor.take(), params.as_object_mut()) {
            object.insert("cursor".to_string(), cursor);
        }
        let message = json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params});
        let response = match inner.clone().oneshot(template.build(&message)).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        if !response.status().is_success() {
            return Err(format!("tools/list answered HTTP {}", response.status()));
        }
        let mut reader = Reader::new(is_event_stream(response.headers()), id, budget);
        let mut body = response.into_body();
        let mut answer = None;
        while answer.is_none()
            && !reader.overflowed()
            && let Some(frame) = body.frame().await
        {
            let Ok(frame) = frame;
            if let Ok(data) = frame.into_data() {
                budget = budget.saturating_sub(data.len());
                answer = reader.push(&data);
            }
        }
        let answer = answer.or_else(|| reader.finish());
        if reader.overflowed() {
            return Err(format!("the tool list exceeds {MAX_LIST_BYTES} bytes"));
        }
        let answer = answer.ok_or("tools/list gave no answer")?;
        let result = answer.get("result").ok_or_else(|| format!("tools/list failed: {}", answer["error"]))?;
        tools.extend(result.get("tools").and_then(Value::as_array).into_iter().flatten().cloned());
        match result.get("nextCursor").filter(|next| !next.is_null()) {
            Some(next) => cursor = Some(next.clone()),
            None => return Ok(tools),
        }
    }
    Err(format!("the tool list has more than {MAX_PAGES} pages"))
}

/// The layer for [`McpParams`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct McpParamsLayer;

impl<S> Layer<S> for McpParamsLayer {
    type Service = McpParams<S>;

    fn layer(&self, inner: S) -> Self::Service {
        McpParams { inner }
    }
}

/// Validates the `Mcp-Param-*` headers of 2026-07-28 `tools/call` requests before calling
/// `inner`, and learns the backends' tool lists from what passes.
#[derive(Debug, Clone)]
pub(crate) struct McpParams<S> {
    inner: S,
}

/// The 2026-07-28 `MCP-Protocol-Version` of a POST, the only requests checked here.
fn checked_version(request: &Request<RequestBody>) -> Option<HeaderValue> {
    if request.method() != Method::POST {
        return None;
    }
    mcp_headers::protocol_version(request.headers()).filter(|version| *version >= STANDARD_HEADERS_VERSION)?;
    request.headers().get(PROTOCOL_VERSION_HEADER).cloned()
}

/// Checks one `tools/call`, listing the tools first if nothing is known yet.
async fn check_call<S>(
    inner: S,
    schemas: &ToolSchemas,
    template: ListRequest,
    headers: &HeaderMap,
    message: &Value,
) -> Result<(), String>
where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>, Error = Infallible> + Clone,
{
    let Some(name) = message.pointer("/params/name").and_then(Value::as_str) else { return Ok(()) };
    let fetch = async {
        match tokio::time::timeout(FETCH_TIMEOUT, list_tools(inner, &template)).await {
            Ok(Ok(tools)) => Some(tools),
            Ok(Err(reason)) => {
                tracing::warn!(
                    backend = schemas.backend,
                    reason,
                    "could not list tools to validate Mcp-Param-* headers"
                );
                None
            }
            Err(_) => {
                tracing::warn!(backend = schemas.backend, "listing tools to validate Mcp-Param-* headers timed out");
                None
            }
        }
    };
    let catalogue = schemas.get_or_fetch(fetch).await;
    match catalogue.as_ref().and_then(|catalogue| catalogue.tools.get(name)) {
        Some(params) => check(headers, params, message.pointer("/params/arguments")),
        None => Ok(()),
    }
}

/// Serves one request routed to `target`: checks a 2026-07-28 `tools/call`, arranges for a
/// whole `tools/list` answer to be learnt, and watches SSE answers for `list_changed`.
async fn handle<S>(mut inner: S, target: Target, request: Request<RequestBody>) -> Response<ResponseBody>
where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>, Error = Infallible> + Clone,
{
    let schemas = Arc::clone(target.0.tool_schemas());
    let call = |inner: &mut S, request| {
        let future = inner.call(request);
        async move {
            match future.await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    };
    let Some(version) = checked_version(&request) else {
        return watch(call(&mut inner, request).await, schemas, None);
    };
    let (parts, body) = request.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return Rejection::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("could not read the request body: {error}"),
            )
            .into_response();
        }
    };
    let message: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut pending = None;
    match message.get("method").and_then(Value::as_str) {
        Some("tools/call") => {
            let template =
                ListRequest { uri: parts.uri.clone(), host: parts.headers.get(header::HOST).cloned(), version, target };
            if let Err(reason) = check_call(inner.clone(), &schemas, template, &parts.headers, &message).await {
                // The id as the client wrote it (the Streamable-HTTP layer kept the message's
                // bytes), never re-serialized from the parsed value.
                let raw = parts
                    .extensions
                    .get::<ParsedBody>()
                    .and_then(|ParsedBody(body)| body.messages().first()?.id_bytes());
                let id =
                    raw.unwrap_or_else(|| Bytes::from(message.get("id").cloned().unwrap_or(Value::Null).to_string()));
                return Rejection::new(StatusCode::BAD_REQUEST, "header_mismatch", reason)
                    .with_code(HEADER_MISMATCH)
                    .with_raw_id(id)
                    .into_response();
            }
        }
        Some("tools/list") if message.pointer("/params/cursor").is_none_or(Value::is_null) => {
            let id = message.get("id").cloned().unwrap_or(Value::Null);
            pending = Some(Pending { id, seen: schemas.epoch() });
        }
        _ => {}
    }
    let response = call(&mut inner, Request::from_parts(parts, request_body(bytes))).await;
    watch(response, schemas, pending)
}

impl<S> Service<Request<RequestBody>> for McpParams<S>
where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        match request.extensions().get::<Target>().cloned() {
            Some(target) => Box::pin(async move { Ok(handle(inner, target, request).await) }),
            // Without a backend there is no tool list to check against; the router below
            // answers such requests.
            None => Box::pin(inner.call(request)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::{
        backend::{Backend, BackendKind},
        body::response_body,
    };
    use http_body_util::StreamBody;
    use tower::{service_fn, util::BoxCloneSyncService};

    /// Header names and values, or header names and argument paths.
    type Pairs<'a> = &'a [(&'a str, &'a str)];

    fn headers(pairs: Pairs<'_>) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn summary(params: &[HeaderParam]) -> Vec<(String, String)> {
        params.iter().map(|param| (param.header.to_string(), param.path.join("."))).collect()
    }

    fn annotated_string(name: Value) -> Value {
        json!({"type": "string", "x-mcp-header": name})
    }

    #[test]
    fn annotations() {
        // `Some`: the tool is valid and mirrors these (header, path) pairs; `None`: it is invalid.
        let ok = |pairs: Pairs<'static>| Some(pairs);
        let table: Vec<(Value, Option<Pairs<'static>>)> = vec![
            (json!({"type": "object"}), ok(&[])),
            (json!(null), ok(&[])),
            (
                json!({"properties": {"region": annotated_string(json!("Region"))}}),
                ok(&[("mcp-param-region", "region")]),
            ),
            (
                json!({"properties": {
                    "n": {"type": "integer", "x-mcp-header": "N"},
                    "b": {"type": "boolean", "x-mcp-header": "B"},
                    "s": {"type": ["string", "null"], "x-mcp-header": "S"},
                }}),
                ok(&[("mcp-param-b", "b"), ("mcp-param-n", "n"), ("mcp-param-s", "s")]),
            ),
            (
                json!({"properties": {"where": {"type": "object", "properties": {
                    "zone": {"type": "string", "x-mcp-header": "Zone"}}}}}),
                ok(&[("mcp-param-zone", "where.zone")]),
            ),
            // A property that happens to be called x-mcp-header is not an annotation.
            (json!({"properties": {"x-mcp-header": {"type": "string"}}}), ok(&[])),
            (json!({"properties": {"e": {"type": "string", "enum": [{"x-mcp-header": "E"}]}}}), ok(&[])),
            (
                json!({"properties": {"tok": annotated_string(json!("A-b_c.d~1!"))}}),
                ok(&[("mcp-param-a-b_c.d~1!", "tok")]),
            ),
            (json!({"properties": {"x": {"type": "number", "x-mcp-header": "X"}}}), None),
            (json!({"properties": {"x": {"type": "object", "x-mcp-header": "X"}}}), None),
            (json!({"properties": {"x": {"x-mcp-header": "X"}}}), None),
            (json!({"properties": {"x": {"type": ["string", "integer"], "x-mcp-header": "X"}}}), None),
            (json!({"properties": {"x": annotated_string(json!(""))}}), None),
            (json!({"properties": {"x": annotated_string(json!("Bad Name"))}}), None),
            (json!({"properties": {"x": annotated_string(json!("a:b"))}}), None),
            (json!({"properties": {"x": annotated_string(json!("line\r\nbreak"))}}), None),
            (json!({"properties": {"x": annotated_string(json!("Région"))}}), None),
            (json!({"properties": {"x": annotated_string(json!(7))}}), None),
            (json!({"properties": {"a": annotated_string(json!("Dup")), "b": annotated_string(json!("dUP"))}}), None),
            (json!({"properties": {"list": {"type": "array", "items": annotated_string(json!("I"))}}}), None),
            (json!({"anyOf": [{"properties": {"x": annotated_string(json!("X"))}}]}), None),
            (json!({"if": {"properties": {"x": annotated_string(json!("X"))}}}), None),
            (json!({"$defs": {"d": annotated_string(json!("D"))}, "properties": {"x": {"$ref": "#/$defs/d"}}}), None),
            (json!({"type": "object", "x-mcp-header": "Root"}), None),
        ];
        for (schema, expected) in table {
            let got = header_params(&schema).ok().map(|params| summary(&params));
            let expected = expected.map(|pairs| pairs.iter().map(|(h, p)| (h.to_string(), p.to_string())).collect());
            assert_eq!(got, expected, "{schema}");
        }
    }

    #[test]
    fn headers_must_mirror_the_arguments() {
        let schema = json!({"properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "count": {"type": "integer", "x-mcp-header": "Count"},
            "dry": {"type": "boolean", "x-mcp-header": "Dry"},
            "where": {"type": "object", "properties": {"zone": {"type": "string", "x-mcp-header": "Zone"}}},
        }});
        let params = header_params(&schema).unwrap();
        let table: &[(Pairs<'_>, Value, bool)] = &[
            (&[], json!({}), true),
            (&[], json!(null), true),
            (&[("mcp-param-region", "us-west1")], json!({"region": "us-west1"}), true),
            (&[("MCP-PARAM-REGION", " us-west1 ")], json!({"region": "us-west1"}), true),
            (&[("mcp-param-region", "us-east1")], json!({"region": "us-west1"}), false),
            (&[("mcp-param-region", "US-WEST1")], json!({"region": "us-west1"}), false),
            (&[], json!({"region": "us-west1"}), false),
            (&[], json!({"region": null}), true),
            (&[("mcp-param-region", "x")], json!({"region": null}), false),
            (&[("mcp-param-region", "x")], json!({}), false),
            (&[("mcp-param-region", "a"), ("mcp-param-region", "a")], json!({"region": "a"}), false),
            // Base64: strict, padded, standard alphabet; the markers are exact.
            (&[("mcp-param-region", "=?base64?SGVsbG8=?=")], json!({"region": "Hello"}), true),
            (&[("mcp-param-region", "=?base64?SGVsbG8?=")], json!({"region": "Hello"}), false),
            (&[("mcp-param-region", "=?base64?SGVs!!!bG8=?=")], json!({"region": "Hello"}), false),
            (&[("mcp-param-region", "=?base64?SGVsbG8_?=")], json!({"region": "Hello?"}), false),
            (&[("mcp-param-region", "=?base64?5LiW55WM?=")], json!({"region": "世界"}), true),
            (&[("mcp-param-region", "=?base64?/w==?=")], json!({"region": "\u{ff}"}), false),
            (&[("mcp-param-region", "=?BASE64?SGVsbG8=?=")], json!({"region": "=?BASE64?SGVsbG8=?="}), true),
            (&[("mcp-param-region", "SGVsbG8=")], json!({"region": "SGVsbG8="}), true),
            (&[("mcp-param-region", "=?base64?SGVsbG8=")], json!({"region": "=?base64?SGVsbG8="}), true),
            (&[("mcp-param-region", "=?base64?IHBhZGRlZCA=?=")], json!({"region": " padded "}), true),
            // Integers compare as numbers; booleans are lowercase words.
            (&[("mcp-param-count", "42")], json!({"count": 42}), true),
            (&[("mcp-param-count", "42.0")], json!({"count": 42}), true),
            (&[("mcp-param-count", "42")], json!({"count": 42.0}), true),
            (&[("mcp-param-count", "-7")], json!({"count": -7}), true),
            (&[("mcp-param-count", "43")], json!({"count": 42}), false),
            (&[("mcp-param-count", "042")], json!({"count": 42}), false),
            (&[("mcp-param-count", "4x")], json!({"count": 42}), false),
            (&[("mcp-param-count", "9007199254740993")], json!({"count": 9007199254740992_i64}), false),
            (&[("mcp-param-count", "=?base64?NDI=?=")], json!({"count": 42}), true),
            (&[("mcp-param-dry", "true")], json!({"dry": true}), true),
            (&[("mcp-param-dry", "false")], json!({"dry": false}), true),
            (&[("mcp-param-dry", "True")], json!({"dry": true}), false),
            (&[("mcp-param-dry", "1")], json!({"dry": true}), false),
            (&[("mcp-param-region", "[1]")], json!({"region": [1]}), false),
            // Nested properties are reached by their chain of names.
            (&[("mcp-param-zone", "b")], json!({"where": {"zone": "b"}}), true),
            (&[], json!({"where": {"zone": "b"}}), false),
            (&[], json!({"where": "b"}), true),
            // Headers no tool declares are none of berth's business.
            (&[("mcp-param-other", "anything"), ("mcp-param-region", "r")], json!({"region": "r"}), true),
        ];
        for (pairs, arguments, ok) in table {
            let result = check(&headers(pairs), &params, Some(arguments));
            assert_eq!(result.is_ok(), *ok, "{pairs:?} {arguments}: {result:?}");
        }
        // Bytes beyond visible ASCII are invalid characters, even in an undeclared position.
        let mut raw = HeaderMap::new();
        raw.insert("mcp-param-region", HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert!(check(&raw, &params, Some(&json!({"region": "café"}))).is_err());
    }

    #[test]
    fn the_scanner_sees_across_seams() {
        let text = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n";
        for piece in [1, 2, 7, 31, 32, 33, 64, text.len()] {
            let mut scanner = Scanner::default();
            // Every piece goes through the scanner, as every frame of a stream would.
            let seen = text.chunks(piece).filter(|chunk| scanner.saw(chunk)).count() > 0;
            assert!(seen, "pieces of {piece}");
        }
        let mut scanner = Scanner::default();
        assert!(!scanner.saw(b"data: notifications/prompts/list_changed\n\n"));
        assert!(!scanner.saw(b"notifications/tools/list_"));
        assert!(scanner.saw(b"changed"));
    }

    #[test]
    fn the_reader_finds_the_answer() {
        let answer = json!({"jsonrpc": "2.0", "id": 3, "result": {"tools": []}});
        let sse = format!(
            "id: 0\ndata:\n\n: keep-alive\n\ndata: {{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"x\"}}\r\n\r\n\
             event: message\ndata: {answer}\n\ndata: {{\"late\": true}}\n\n"
        );
        for piece in [1, 5, 100, sse.len()] {
            let mut reader = Reader::new(true, json!(3), 1 << 20);
            let found = sse.as_bytes().chunks(piece).find_map(|chunk| reader.push(chunk));
            assert_eq!(found.as_ref(), Some(&answer), "pieces of {piece}");
        }
        let mut unterminated = Reader::new(true, json!(3), 1 << 20);
        assert_eq!(unterminated.push(format!("data: {answer}").as_bytes()), None);
        assert_eq!(unterminated.finish(), Some(answer.clone()));
        let mut plain = Reader::new(false, json!(3), 1 << 20);
        assert_eq!(plain.push(answer.to_string().as_bytes()), None);
        assert_eq!(plain.finish(), Some(answer.clone()));
        let mut other = Reader::new(false, json!(4), 1 << 20);
        other.push(answer.to_string().as_bytes());
        assert_eq!(other.finish(), None);
        let mut small = Reader::new(false, json!(3), 10);
        small.push(answer.to_string().as_bytes());
        assert!(small.overflowed());
        assert_eq!(small.finish(), None);
    }

    /// A backend with two tools, one of which mirrors an argument into the header named by
    /// `header`; its list comes in two pages, as JSON or SSE.
    struct Fake {
        header: Mutex<&'static str>,
        sse: bool,
        paged: bool,
        lists: AtomicUsize,
        calls: AtomicUsize,
    }

    fn sse_body(chunks: Vec<String>) -> ResponseBody {
        let frames = chunks.into_iter().map(|chunk| Ok::<_, Infallible>(Frame::data(Bytes::from(chunk))));
        StreamBody::new(futures::stream::iter(frames)).boxed()
    }

    fn answer(fake: &Fake, message: &Value, extra: Vec<String>) -> Response<ResponseBody> {
        let mut response = if fake.sse {
            let mut chunks = extra;
            chunks.push(format!("event: message\ndata: {message}\n\n"));
            let mut response = Response::new(sse_body(chunks));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            response
        } else {
            let mut response = Response::new(response_body(message.to_string()));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        };
        *response.status_mut() = StatusCode::OK;
        response
    }

    impl Fake {
        fn new(sse: bool, paged: bool) -> Arc<Self> {
            let header = Mutex::new("Region");
            Arc::new(Self { header, sse, paged, lists: AtomicUsize::new(0), calls: AtomicUsize::new(0) })
        }

        async fn serve(self: Arc<Self>, request: Request<RequestBody>) -> Response<ResponseBody> {
            assert!(request.extensions().get::<Target>().is_some(), "every request keeps its target");
            let bytes = request.into_body().collect().await.unwrap().to_bytes();
            let message: Value = serde_json::from_slice(&bytes).unwrap();
            let id = message["id"].clone();
            match message["method"].as_str().unwrap() {
                "tools/list" => {
                    self.lists.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    let header = *lock(&self.header);
                    let plain = json!({"name": "plain", "inputSchema": {"type": "object"}});
                    let regional = json!({"name": "where", "inputSchema": {"type": "object", "properties": {
                        "place": {"type": "string", "x-mcp-header": header}}}});
                    let result = match (self.paged, message["params"]["cursor"].as_str()) {
                        (false, _) => json!({"tools": [plain, regional]}),
                        (true, None) => json!({"tools": [plain], "nextCursor": "2"}),
                        (true, Some(_)) => json!({"tools": [regional]}),
                    };
                    answer(&self, &json!({"jsonrpc": "2.0", "id": id, "result": result}), vec![])
                }
                "tools/call" => {
                    self.calls.fetch_add(1, Ordering::SeqCst);
                    let mut extra = vec![];
                    if message["params"]["name"] == "announce" {
                        *lock(&self.header) = "Zone";
                        // Split so that the notification straddles two frames.
                        let note = r#"data: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
                        extra = vec![note[..40].to_string(), format!("{}\n\n", &note[40..])];
                    }
                    answer(&self, &json!({"jsonrpc": "2.0", "id": id, "result": json!({"content": []})}), extra)
                }
                _ => answer(&self, &json!({"jsonrpc": "2.0", "id": id, "result": json!({})}), vec![]),
            }
        }
    }

    fn backend() -> Arc<Backend> {
        let unused = BoxCloneSyncService::new(service_fn(|_: Request<RequestBody>| async {
            Ok::<_, Infallible>(Response::new(response_body("")))
        }));
        Arc::new(Backend::new("fake", false, BackendKind::Native(unused), Arc::new(ToolSchemas::new("fake"))))
    }

    struct Rig {
        fake: Arc<Fake>,
        backend: Arc<Backend>,
    }

    impl Rig {
        /// A rig whose backend paginates its tool list.
        fn new(sse: bool) -> Self {
            Self::with(sse, true)
        }

        fn with(sse: bool, paged: bool) -> Self {
            Self { fake: Fake::new(sse, paged), backend: backend() }
        }

        async fn send(&self, version: &str, message: Value, extra: &[(&str, &str)]) -> (StatusCode, Value) {
            let fake = Arc::clone(&self.fake);
            let service = McpParamsLayer.layer(service_fn(move |request| {
                let fake = Arc::clone(&fake);
                async move { Ok::<_, Infallible>(fake.serve(request).await) }
            }));
            let mut request = Request::post("/fake/mcp")
                .header(PROTOCOL_VERSION_HEADER, version)
                .header("mcp-method", message["method"].as_str().unwrap());
            for (name, value) in extra {
                request = request.header(*name, *value);
            }
            let mut request = request.body(request_body(message.to_string())).unwrap();
            request.extensions_mut().insert(Target(Arc::clone(&self.backend)));
            let response = service.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8_lossy(&bytes).to_string();
            let body = serde_json::from_str(&text)
                .or_else(|_| {
                    text.lines()
                        .filter_map(|l| l.strip_prefix("data: "))
                        .next_back()
                        .map_or(Ok(Value::Null), serde_json::from_str)
                })
                .unwrap_or(Value::Null);
            (status, body)
        }

        async fn call(&self, tool: &str, place: Option<&str>, extra: &[(&str, &str)]) -> (StatusCode, Value) {
            let arguments = place.map_or(json!({}), |place| json!({"place": place}));
            let message = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments}});
            self.send(STANDARD_HEADERS_VERSION, message, extra).await
        }

        fn lists(&self) -> usize {
            self.fake.lists.load(Ordering::SeqCst)
        }
    }

    fn assert_mismatch((status, body): (StatusCode, Value)) {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], HEADER_MISMATCH, "{body}");
        assert_eq!(body["id"], 7, "{body}");
    }

    #[tokio::test]
    async fn a_miss_lists_every_page_once_then_validates() {
        for sse in [false, true] {
            let rig = Rig::new(sse);
            assert_mismatch(rig.call("where", Some("here"), &[("mcp-param-region", "there")]).await);
            assert_eq!(rig.lists(), 2, "both pages, once");
            assert_eq!(rig.fake.calls.load(Ordering::SeqCst), 0, "a refused call never reaches the backend");
            assert_eq!(rig.call("where", Some("here"), &[("mcp-param-region", "here")]).await.0, StatusCode::OK);
            assert_mismatch(rig.call("where", Some("here"), &[]).await);
            assert_eq!(rig.call("where", None, &[]).await.0, StatusCode::OK);
            assert_eq!(rig.call("plain", None, &[("mcp-param-region", "x")]).await.0, StatusCode::OK);
            assert_eq!(rig.call("unknown", Some("x"), &[("mcp-param-region", "y")]).await.0, StatusCode::OK);
            assert_eq!(rig.lists(), 2, "cached");
        }
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_fetch() {
        let rig = Rig::new(true);
        let calls = (0..4).map(|_| rig.call("where", Some("a"), &[("mcp-param-region", "a")]));
        for (status, body) in futures::future::join_all(calls).await {
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        assert_eq!(rig.lists(), 2);
    }

    #[tokio::test]
    async fn older_versions_pass_untouched() {
        let rig = Rig::new(false);
        for version in ["2025-11-25", "2025-06-18"] {
            let (status, _) = rig
                .send(
                    version,
                    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                        "params": {"name": "where", "arguments": {"place": "a"}}}),
                    &[("mcp-param-region", "b")],
                )
                .await;
            assert_eq!(status, StatusCode::OK);
        }
        assert_eq!(rig.lists(), 0, "nothing is listed for them");
    }

    #[tokio::test]
    async fn whole_lists_that_pass_are_learnt() {
        for (sse, paged) in [(false, false), (true, false), (false, true), (true, true)] {
            let rig = Rig::with(sse, paged);
            let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
            let (status, body) = rig.send(STANDARD_HEADERS_VERSION, list, &[]).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            // A first page is not the whole list: then berth lists the tools itself.
            assert_eq!(rig.backend.tool_schemas().get().is_some(), !paged, "sse {sse}, paged {paged}");
            assert_mismatch(rig.call("where", Some("a"), &[("mcp-param-region", "b")]).await);
            assert_eq!(rig.lists(), if paged { 3 } else { 1 }, "sse {sse}, paged {paged}");
        }
    }

    #[tokio::test]
    async fn list_changed_drops_the_cache() {
        let rig = Rig::new(true);
        assert_eq!(rig.call("where", Some("a"), &[("mcp-param-region", "a")]).await.0, StatusCode::OK);
        assert_eq!(rig.lists(), 2);
        // The announcement changes the annotation to Zone and says so on its SSE stream.
        assert_eq!(rig.call("announce", None, &[]).await.0, StatusCode::OK);
        assert!(rig.backend.tool_schemas().get().is_none());
        assert_mismatch(rig.call("where", Some("a"), &[("mcp-param-region", "a")]).await);
        assert_eq!(rig.lists(), 4, "listed again");
        assert_eq!(rig.call("where", Some("a"), &[("mcp-param-zone", "a")]).await.0, StatusCode::OK);
        // A notification on an older client's stream counts as well.
        let schemas = rig.backend.tool_schemas();
        assert!(schemas.get().is_some());
        let stream = sse_body(vec!["data: {\"method\":\"notifications/tools/list_changed\"}\n\n".into()]);
        let mut response = Response::new(stream);
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        watch(response, Arc::clone(schemas), None).into_body().collect().await.unwrap();
        assert!(schemas.get().is_none());
    }

    #[test]
    fn a_list_read_across_an_invalidation_is_not_cached() {
        let schemas = ToolSchemas::new("x");
        let seen = schemas.epoch();
        schemas.invalidate();
        let tools = [json!({"name": "t", "inputSchema": {"properties": {"a": annotated_string(json!("A"))}}})];
        let catalogue = schemas.replace(seen, &tools);
        assert!(catalogue.tools.contains_key("t"), "still used for the call that read it");
        assert!(schemas.get().is_none());
        let catalogue = schemas.replace(schemas.epoch(), &tools);
        assert!(schemas.get().is_some_and(|cached| Arc::ptr_eq(&cached, &catalogue)));
    }
}
