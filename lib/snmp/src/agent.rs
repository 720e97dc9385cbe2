//! The agent: async-snmp's UDP agent, configured from an [`SnmpConfig`], answering from
//! a [`MibSource`], with a handle for traps, statistics and shutdown.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_snmp::handler::{
    BoxFuture, GetNextResult, GetResult, HandlerError, HandlerResult, MibHandler, RequestContext,
};
use async_snmp::{
    Agent, AuthoritativeEngine, NotificationSinkId, Oid, PersistedAuthoritativeEngine,
    SecurityLevel, SecurityModel, SinkStatus, UsmConfig, VacmBuilder, VarBind, View,
};

use crate::config::{SinkSecurity, SnmpConfig, UserConfig};
use crate::notification::Notification;
use crate::snapshot::MibSource;
use crate::tree::{Clock, Lookup, MibTree};

/// The view every identity's notifications are checked against: all of them. What a
/// trap carries is fixed by [`Notification`], not by the receiver's read view. Config
/// view names cannot contain '/', so it cannot clash with one.
const NOTIFY_VIEW: &str = "palisade-snmp/notify";

/// How often the agent logs the requests it dropped since the last time.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Starts an SNMP agent: binds `config`'s UDP address and answers GET, GETNEXT and
/// GETBULK from `source` until the returned handle is shut down or dropped.
///
/// SET is answered `notWritable` (`noAccess` outside the identity's view): the agent is
/// read-only. SNMPv1 requests are refused: communities are SNMPv2c only.
pub async fn serve(
    config: SnmpConfig,
    source: Arc<dyn MibSource>,
) -> Result<SnmpHandle, SnmpError> {
    let clock = Clock::starting_at(Instant::now());
    let views: HashMap<String, View> = config
        .views
        .iter()
        .map(|(name, spec)| {
            let view = spec
                .include
                .iter()
                .fold(View::new(), |v, oid| v.include(oid.to_snmp()));
            let view = spec
                .exclude
                .iter()
                .fold(view, |v, oid| v.exclude(oid.to_snmp()));
            (name.clone(), view)
        })
        .collect();
    let handler = Arc::new(Handler {
        source,
        clock,
        views: views.clone(),
        last: Mutex::new(None),
    });

    let mut builder = Agent::builder()
        .bind(config.listen.to_string())
        .handler(Oid::from_slice(&[1, 3, 6, 1]), handler)
        .communities(
            config
                .communities
                .iter()
                .map(|c| c.name.0.as_bytes().to_vec()),
        );
    for user in &config.users {
        builder = builder
            .usm_user(user.name.clone(), |u| match &user.privacy {
                Some((protocol, passphrase)) => u.auth_priv(
                    user.auth.0.to_snmp(),
                    &user.auth.1.0,
                    protocol.to_snmp(),
                    &passphrase.0,
                ),
                None => u.auth(user.auth.0.to_snmp(), &user.auth.1.0),
            })
            .map_err(|e| SnmpError::Credentials {
                user: user.name.clone(),
                reason: e.to_string(),
            })?;
    }
    let v3_sinks = config
        .trap_sinks
        .iter()
        .any(|s| matches!(s.security, SinkSecurity::User(_)));
    if !config.users.is_empty() || v3_sinks {
        builder = builder.authoritative_engine(engine(config.engine_state_file.as_deref())?);
    }
    for (i, sink) in config.trap_sinks.iter().enumerate() {
        let id = NotificationSinkId::new(format!("sink-{i}")).expect("1 to 32 octets");
        builder = match &sink.security {
            SinkSecurity::Community(community) => builder.trap_sink(
                id,
                sink.address.clone(),
                async_snmp::Auth::v2c(community.0.as_bytes().to_vec()),
            ),
            SinkSecurity::User(name) => {
                let user = config
                    .users
                    .iter()
                    .find(|u| &u.name == name)
                    .expect("validated: trap sink users are configured users");
                builder.trap_sink(id, sink.address.clone(), usm_config(user)?)
            }
        };
    }
    let agent = builder
        .vacm(|vacm| access_control(&config, &views, vacm))
        .build()
        .await
        .map_err(|source| SnmpError::Start {
            listen: config.listen,
            source,
        })?;

    let local_addr = agent.local_addr();
    let run = tokio::spawn({
        let agent = agent.clone();
        async move {
            if let Err(error) = agent.run().await {
                tracing::error!(%error, "the SNMP agent stopped");
            }
        }
    });
    let monitor = tokio::spawn(log_drops(agent.clone()));
    tracing::info!(%local_addr, "SNMP agent listening");
    Ok(SnmpHandle {
        agent,
        clock,
        local_addr,
        run: Some(run),
        monitor,
    })
}

/// VACM (RFC 3415): each community and user reads its view; SET passes VACM on the
/// same view and is refused by the read-only handler; notifications are always allowed.
fn access_control(
    config: &SnmpConfig,
    views: &HashMap<String, View>,
    mut vacm: VacmBuilder,
) -> VacmBuilder {
    for c in &config.communities {
        let group = format!("community/{}", c.name.0);
        vacm = vacm
            .group(c.name.0.clone(), SecurityModel::V2c, group.clone())
            .access(
                group,
                SecurityModel::V2c,
                SecurityLevel::NoAuthNoPriv,
                |a| {
                    a.read_view(c.view.clone())
                        .write_view(c.view.clone())
                        .notify_view(NOTIFY_VIEW)
                },
            );
    }
    for u in &config.users {
        let group = format!("user/{}", u.name);
        vacm = vacm
            .group(u.name.clone(), SecurityModel::Usm, group.clone())
            .access(group, SecurityModel::Usm, security_level(u), |a| {
                a.read_view(u.view.clone())
                    .write_view(u.view.clone())
                    .notify_view(NOTIFY_VIEW)
            });
    }
    // Communities that only send traps have no read access, and no inbound request can
    // use them: async-snmp accepts only the configured communities.
    let trap_only: BTreeSet<&str> = config
        .trap_sinks
        .iter()
        .filter_map(|s| match &s.security {
            SinkSecurity::Community(c) => Some(c.0.as_str()),
            SinkSecurity::User(_) => None,
        })
        .filter(|c| !config.communities.iter().any(|known| known.name.0 == *c))
        .collect();
    for community in trap_only {
        let group = format!("trap/{community}");
        vacm = vacm
            .group(community.to_owned(), SecurityModel::V2c, group.clone())
            .access(
                group,
                SecurityModel::V2c,
                SecurityLevel::NoAuthNoPriv,
                |a| a.notify_view(NOTIFY_VIEW),
            );
    }
    for (name, view) in views {
        let view = view.clone();
        vacm = vacm.view(name.clone(), |_| view);
    }
    vacm.view(NOTIFY_VIEW, |v| v.include(Oid::from_slice(&[1, 3, 6, 1])))
}

/// The least a user's requests must carry: authentication, and privacy when the user
/// has a privacy passphrase.
fn security_level(user: &UserConfig) -> SecurityLevel {
    if user.privacy.is_some() {
        SecurityLevel::AuthPriv
    } else {
        SecurityLevel::AuthNoPriv
    }
}

fn usm_config(user: &UserConfig) -> Result<UsmConfig, SnmpError> {
    let config = UsmConfig::new(user.name.clone());
    match &user.privacy {
        Some((protocol, passphrase)) => config.auth_priv(
            user.auth.0.to_snmp(),
            &user.auth.1.0,
            protocol.to_snmp(),
            &passphrase.0,
        ),
        None => config.auth(user.auth.0.to_snmp(), &user.auth.1.0),
    }
    .map_err(|e| SnmpError::Credentials {
        user: user.name.clone(),
        reason: e.to_string(),
    })
}

/// The SNMPv3 authoritative engine: its ID and boot count, kept in `state_file` across
/// restarts (RFC 3414 requires the count to grow at each start), or new at each start.
fn engine(state_file: Option<&Path>) -> Result<AuthoritativeEngine, SnmpError> {
    let new_id = || {
        async_snmp::generate_engine_id()
            .map_err(|e| SnmpError::Engine(format!("generating an engine ID: {e}")))
    };
    let Some(path) = state_file else {
        return AuthoritativeEngine::install(new_id()?, |_| Ok::<(), std::io::Error>(()))
            .map_err(|e| SnmpError::Engine(e.to_string()));
    };
    let state_error = |reason: String| SnmpError::Engine(format!("{}: {reason}", path.display()));
    let persist = {
        let path = path.to_path_buf();
        move |state: &PersistedAuthoritativeEngine| write_engine_state(&path, state)
    };
    let engine = match std::fs::read_to_string(path) {
        Ok(text) => {
            AuthoritativeEngine::restart(parse_engine_state(&text).map_err(state_error)?, persist)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            AuthoritativeEngine::install(new_id()?, persist)
        }
        Err(e) => return Err(state_error(e.to_string())),
    };
    engine.map_err(|e| state_error(e.to_string()))
}

fn parse_engine_state(text: &str) -> Result<PersistedAuthoritativeEngine, String> {
    let mut id = None;
    let mut boots = None;
    for line in text.lines().map(str::trim) {
        match line.split_once(' ') {
            Some(("engine-id", hex)) => id = Some(parse_hex(hex.trim())?),
            Some(("boots", n)) => {
                boots = Some(
                    n.trim()
                        .parse::<u32>()
                        .map_err(|_| format!("bad boot count {n:?}"))?,
                )
            }
            _ if line.is_empty() || line.starts_with('#') => {}
            _ => return Err(format!("unexpected line {line:?}")),
        }
    }
    let (Some(id), Some(boots)) = (id, boots) else {
        return Err("needs an engine-id line and a boots line".into());
    };
    PersistedAuthoritativeEngine::new(id, boots).map_err(|e| e.to_string())
}

fn parse_hex(hex: &str) -> Result<Vec<u8>, String> {
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("engine-id {hex:?} is not hexadecimal octets"));
    }
    Ok((0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("checked hex digits"))
        .collect())
}

/// Written to a temporary file first, so a crash leaves the old state or the new one.
fn write_engine_state(path: &Path, state: &PersistedAuthoritativeEngine) -> std::io::Result<()> {
    let hex: String = state
        .engine_id()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let text = format!(
        "# palisade-snmp SNMPv3 engine state: keep it, SNMPv3 managers rely on it\n\
         engine-id {hex}\nboots {}\n",
        state.engine_boots()
    );
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Logs, at most once per [`DROP_LOG_INTERVAL`], how many messages the agent dropped.
async fn log_drops(agent: Agent) {
    let cancel = agent.cancellation_token();
    let mut last = SnmpStats::of(&agent);
    let mut tick = tokio::time::interval(DROP_LOG_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = SnmpStats::of(&agent);
        let (malformed, refused) = now.dropped_since(&last);
        if malformed > 0 || refused > 0 {
            tracing::warn!(
                malformed,
                usm_refused = refused,
                "the SNMP agent dropped messages in the last {}s",
                DROP_LOG_INTERVAL.as_secs()
            );
        }
        last = now;
    }
}

/// The running agent. Dropping it stops the agent; [`shutdown`](Self::shutdown) also
/// waits for the requests in flight.
pub struct SnmpHandle {
    agent: Agent,
    clock: Clock,
    local_addr: SocketAddr,
    run: Option<tokio::task::JoinHandle<()>>,
    monitor: tokio::task::JoinHandle<()>,
}

impl SnmpHandle {
    /// The UDP address the agent answers on (with the port picked, if it was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The SNMPv3 engine ID: an SNMPv3 trap receiver needs it to check this agent's
    /// traps (net-snmp: `createUser -e 0x<ID> ...`).
    pub fn engine_id(&self) -> &[u8] {
        self.agent.engine_id()
    }

    /// The agent's counts of the messages it dropped.
    pub fn stats(&self) -> SnmpStats {
        SnmpStats::of(&self.agent)
    }

    /// Sends `notification` as a trap to every configured sink.
    ///
    /// A trap is sent once, unacknowledged: success means the datagram left, not that
    /// it arrived. Failures are also logged.
    pub async fn send_trap(&self, notification: &Notification) -> TrapReport {
        let (trap_oid, varbinds) = notification.to_varbinds();
        let uptime = self.clock.ticks(Instant::now());
        let outcome = self.agent.send_trap(&trap_oid, uptime, varbinds).await;
        let sinks = outcome
            .into_sinks()
            .into_iter()
            .map(|sink| {
                let address = sink.sink.dest();
                let error = match sink.status {
                    SinkStatus::Succeeded => None,
                    SinkStatus::Failed(error) => Some(error.to_string()),
                    SinkStatus::Skipped(reason) => Some(reason.to_string()),
                };
                if let Some(error) = &error {
                    tracing::warn!(%address, %error, trap = %trap_oid, "SNMP trap not sent");
                }
                SinkReport { address, error }
            })
            .collect();
        TrapReport { sinks }
    }

    /// Stops answering and waits for the requests in flight.
    pub async fn shutdown(mut self) {
        self.agent.cancel();
        if let Some(run) = self.run.take()
            && let Err(error) = run.await
        {
            tracing::error!(%error, "the SNMP agent task failed");
        }
    }
}

impl Drop for SnmpHandle {
    fn drop(&mut self) {
        self.agent.cancel();
        self.monitor.abort();
    }
}

impl std::fmt::Debug for SnmpHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnmpHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// What became of a trap at each sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrapReport {
    /// One per configured sink, in configuration order.
    pub sinks: Vec<SinkReport>,
}

impl TrapReport {
    /// Whether the trap left for every sink.
    pub fn all_sent(&self) -> bool {
        self.sinks.iter().all(|s| s.error.is_none())
    }
}

/// What became of a trap at one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkReport {
    /// The sink's address.
    pub address: SocketAddr,
    /// Why the trap was not sent; `None` if it was.
    pub error: Option<String>,
}

/// The agent's counts of the messages it dropped since it started, as the SNMP MIBs
/// define them (32-bit, wrapping).
///
/// Messages with an unknown SNMPv2c community are dropped too, but async-snmp does not
/// count them (`snmpInBadCommunityNames`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnmpStats {
    /// `snmpInASNParseErrs`: messages that are not valid BER or SNMP.
    pub malformed: u32,
    /// `snmpInvalidMsgs`: SNMPv3 messages with inconsistent header flags.
    pub invalid_messages: u32,
    /// `snmpUnknownSecurityModels`: SNMPv3 messages of a security model other than USM.
    pub unknown_security_models: u32,
    /// `usmStatsUnknownUserNames`.
    pub unknown_users: u32,
    /// `usmStatsWrongDigests`: authentication failed (wrong passphrase).
    pub wrong_digests: u32,
    /// `usmStatsDecryptionErrors`.
    pub decryption_errors: u32,
    /// `usmStatsNotInTimeWindows`: stale or replayed SNMPv3 messages.
    pub not_in_time_windows: u32,
    /// `usmStatsUnsupportedSecLevels`: a security level the user does not have.
    pub unsupported_security_levels: u32,
    /// `usmStatsUnknownEngineIDs`: SNMPv3 messages for another engine (discovery
    /// counts here too).
    pub unknown_engine_ids: u32,
    /// `snmpSilentDrops`: requests whose answer could not fit in a message.
    pub silent_drops: u32,
}

impl SnmpStats {
    fn of(agent: &Agent) -> Self {
        SnmpStats {
            malformed: agent.snmp_in_asn_parse_errs(),
            invalid_messages: agent.snmp_invalid_msgs(),
            unknown_security_models: agent.snmp_unknown_security_models(),
            unknown_users: agent.usm_unknown_usernames(),
            wrong_digests: agent.usm_wrong_digests(),
            decryption_errors: agent.usm_decryption_errors(),
            not_in_time_windows: agent.usm_not_in_time_windows(),
            unsupported_security_levels: agent.usm_unsupported_sec_levels(),
            unknown_engine_ids: agent.usm_unknown_engine_ids(),
            silent_drops: agent.snmp_silent_drops(),
        }
    }

    /// The messages dropped since `earlier`: malformed ones, and those USM refused
    /// (engine discovery aside).
    fn dropped_since(&self, earlier: &SnmpStats) -> (u64, u64) {
        let delta = |now: u32, then: u32| u64::from(now.wrapping_sub(then));
        let malformed = delta(self.malformed, earlier.malformed)
            + delta(self.invalid_messages, earlier.invalid_messages)
            + delta(
                self.unknown_security_models,
                earlier.unknown_security_models,
            );
        let refused = delta(self.unknown_users, earlier.unknown_users)
            + delta(self.wrong_digests, earlier.wrong_digests)
            + delta(self.decryption_errors, earlier.decryption_errors)
            + delta(self.not_in_time_windows, earlier.not_in_time_windows)
            + delta(
                self.unsupported_security_levels,
                earlier.unsupported_security_levels,
            );
        (malformed, refused)
    }
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnmpError {
    /// The SNMPv3 engine could not be set up: its state file could not be read, parsed
    /// or written, or no engine ID could be generated.
    #[error("SNMPv3 engine: {0}")]
    Engine(String),
    /// async-snmp refused a user's credentials.
    #[error("SNMPv3 user {user:?}: {reason}")]
    Credentials {
        /// The user.
        user: String,
        /// Why.
        reason: String,
    },
    /// The agent could not bind its address or otherwise start.
    #[error("starting the SNMP agent on {listen}: {source}")]
    Start {
        /// The address it was to listen on.
        listen: SocketAddr,
        /// async-snmp's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The one MIB handler, registered at 1.3.6.1: async-snmp's own handlers (snmpEngine,
/// usmStats, mpdStats) have longer prefixes and answer for their subtrees.
struct Handler {
    source: Arc<dyn MibSource>,
    clock: Clock,
    /// The same views as the VACM configuration, to skip what the requester cannot see
    /// in GETNEXT. Left to async-snmp, each invisible instance would cost another round
    /// of GETNEXT, and a walk past a thousand of them fails with genErr.
    views: HashMap<String, View>,
    /// The tree of the request answered last: all the GETNEXTs of one GETBULK read one
    /// snapshot.
    last: Mutex<Option<(RequestKey, Arc<MibTree>)>>,
}

/// One received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RequestKey {
    received_at: tokio::time::Instant,
    source: SocketAddr,
    request_id: i32,
}

impl Handler {
    fn tree(&self, ctx: &RequestContext) -> HandlerResult<Arc<MibTree>> {
        let key = RequestKey {
            received_at: ctx.received_at(),
            source: ctx.source(),
            request_id: ctx.request_id(),
        };
        let lock = || self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((last, tree)) = &*lock()
            && *last == key
        {
            return Ok(Arc::clone(tree));
        }
        let snapshot = catch_unwind(AssertUnwindSafe(|| self.source.snapshot())).map_err(|_| {
            tracing::error!("the SNMP MIB source panicked; answering genErr");
            HandlerError::new("the MIB source panicked")
        })?;
        let tree = Arc::new(MibTree::build(&snapshot, self.clock, Instant::now()));
        *lock() = Some((key, Arc::clone(&tree)));
        Ok(tree)
    }
}

impl MibHandler for Handler {
    fn get<'a>(
        &'a self,
        ctx: &'a RequestContext,
        oid: &'a Oid,
    ) -> BoxFuture<'a, HandlerResult<GetResult>> {
        Box::pin(async move {
            let tree = self.tree(ctx)?;
            Ok(match tree.get(oid) {
                Lookup::Value(value) => GetResult::Value(value.clone()),
                Lookup::NoSuchInstance => GetResult::NoSuchInstance,
                Lookup::NoSuchObject => GetResult::NoSuchObject,
            })
        })
    }

    fn get_next<'a>(
        &'a self,
        ctx: &'a RequestContext,
        oid: &'a Oid,
    ) -> BoxFuture<'a, HandlerResult<GetNextResult>> {
        Box::pin(async move {
            let tree = self.tree(ctx)?;
            // Without VACM every OID is visible; with it, only the requester's view
            // (always one of ours: async-snmp refuses requests whose view is unknown).
            let view = ctx.read_view().map(|name| {
                std::str::from_utf8(name)
                    .ok()
                    .and_then(|name| self.views.get(name))
            });
            let visible = |oid: &Oid| match view {
                None => true,
                Some(Some(view)) => view.contains(oid),
                Some(None) => false,
            };
            Ok(match tree.next(oid, visible) {
                Some((next, value)) => {
                    GetNextResult::Value(VarBind::new(next.clone(), value.clone()))
                }
                None => GetNextResult::EndOfMibView,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_state_survives_restarts_and_counts_boots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine");
        let first = engine(Some(&path)).unwrap();
        assert_eq!(first.engine_boots(), 1);
        let second = engine(Some(&path)).unwrap();
        assert_eq!(second.engine_id(), first.engine_id());
        assert_eq!(second.engine_boots(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("boots 2"), "{text}");

        std::fs::write(&path, "engine-id zz\nboots 1\n").unwrap();
        let e = engine(Some(&path)).unwrap_err().to_string();
        assert!(e.contains("not hexadecimal"), "{e}");
        std::fs::write(&path, "boots 1\n").unwrap();
        assert!(engine(Some(&path)).is_err());
    }

    /// The embedders run the agent on multi-threaded runtimes and share the handle.
    #[allow(dead_code)]
    fn futures_and_handle_are_send(
        config: SnmpConfig,
        source: Arc<dyn MibSource>,
        handle: &SnmpHandle,
    ) {
        fn send<T: Send>(_: T) {}
        fn sync<T: Send + Sync>(_: &T) {}
        send(serve(config, source));
        send(handle.send_trap(&Notification::DeviceLost {
            device: String::new(),
        }));
        sync(handle);
    }

    #[test]
    fn drops_are_counted_across_counter_wraps() {
        let earlier = SnmpStats {
            malformed: u32::MAX - 1,
            wrong_digests: 5,
            unknown_engine_ids: 1,
            ..SnmpStats::default()
        };
        let now = SnmpStats {
            malformed: 3,
            invalid_messages: u32::MAX,
            wrong_digests: 7,
            unknown_engine_ids: 9,
            ..SnmpStats::default()
        };
        assert_eq!(now.dropped_since(&earlier), (5 + u64::from(u32::MAX), 2));
        assert_eq!(now.dropped_since(&now), (0, 0));
    }

    #[test]
    fn without_a_state_file_each_start_is_a_new_engine() {
        let a = engine(None).unwrap();
        let b = engine(None).unwrap();
        assert_ne!(a.engine_id(), b.engine_id());
        assert_eq!(b.engine_boots(), 1);
    }
}
