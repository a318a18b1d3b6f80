//! The ONVIF Events service of one device (ONVIF Core §9, WS-BaseNotification): PullPoint
//! subscriptions and motion events, as pure state ([`Hub`]) plus the SOAP answers ([`answer`]).
//! The HTTP layer ([`super`]) does the one thing that waits: a `PullMessages` long poll.
//!
//! - Topics: `tns1:RuleEngine/CellMotionDetector/Motion` (data `IsMotion`) and
//!   `tns1:VideoSource/MotionAlarm` (data `State`), the two motion topics Home Assistant's
//!   onvif integration reads; every motion change is sent on both. A subscription's `Filter` is
//!   not read: every subscription gets both topics.
//! - `CreatePullPointSubscription` answers a subscription address of its own
//!   (`/onvif/events/subscription/<32 hex digits>`, random, so one client cannot pull or cancel
//!   another's), with the current motion state as `Initialized` messages queued; `PullMessages`,
//!   `Renew`, `Unsubscribe` and `SetSynchronizationPoint` are posted there (or to the event
//!   service with a WS-Addressing `To` naming it).
//! - Hostile limits: at most [`MAX_SUBSCRIPTIONS`] live subscriptions per device. A
//!   subscription ends at its termination time (at most [`MAX_LIFETIME`] ahead, default
//!   [`DEFAULT_LIFETIME`]) unless renewed, or once nobody has pulled, renewed or synchronized it
//!   for [`KEEP_ALIVE`], whichever is first (as cameras drop a pull point nobody reads); both are
//!   swept on every call. A new subscription on a full device evicts one: from the client
//!   address (IPv6: its /64) that holds the most, the one of those idle longest, so a client
//!   creating subscriptions in a loop only ever evicts its own; an address's only
//!   subscription is evicted only once idle for [`EVICT_IDLE`] (else the new one is refused),
//!   so a client that pulls keeps its subscription even against 16 addresses (an evicted one's pull gets the
//!   no-such-subscription fault, and clients such as Home Assistant then subscribe again);
//!   each queue holds at most [`MAX_QUEUE`] messages (the oldest are dropped first, and
//!   counted); a `PullMessages` waits at most [`MAX_PULL_WAIT`] whatever its `Timeout` says,
//!   and at most [`MAX_MESSAGE_LIMIT`] messages are answered at once.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use nvrkit_media::WallTime;
use tokio::sync::watch;

use super::service::{Fault, Reached};
use super::soap::{Request, esc};

/// ONVIF event service namespace.
pub const NS_EVENTS: &str = "http://www.onvif.org/ver10/events/wsdl";
/// WS-BaseNotification namespace (`Renew`, `Unsubscribe`).
pub const NS_WSNT: &str = "http://docs.oasis-open.org/wsn/b-2";
/// The path prefix of subscription addresses.
pub const SUBSCRIPTION_PATH: &str = "/onvif/events/subscription/";
/// The event service's own address (also served at `/onvif/device_service`).
pub const EVENT_SERVICE_PATH: &str = "/onvif/event_service";

/// The most live subscriptions per device.
pub const MAX_SUBSCRIPTIONS: usize = 16;
/// The most messages queued per subscription (the oldest are dropped past it).
pub const MAX_QUEUE: usize = 64;
/// The longest a `PullMessages` waits for a message, whatever its `Timeout`.
pub const MAX_PULL_WAIT: Duration = Duration::from_secs(30);
/// The most messages one `PullMessages` answers.
pub const MAX_MESSAGE_LIMIT: usize = 64;
/// A subscription's lifetime when the request names none.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// The longest lifetime granted (a longer request is cut to this).
pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// The shortest lifetime granted (a shorter one, or a time in the past, is raised to this).
pub const MIN_LIFETIME: Duration = Duration::from_secs(10);
/// A subscription nobody has pulled, renewed or synchronized for this long is swept before its
/// termination time: twice the longest pull, so a client that pulls back to back (Home
/// Assistant re-pulls 0.75 s after each answer) is never swept.
pub const KEEP_ALIVE: Duration = Duration::from_secs(2 * MAX_PULL_WAIT.as_secs());

/// On a full device, a subscription that is its address's only one is evicted for a new one
/// only once it has been idle this long (no pull, renew or synchronize): a client pulling
/// back to back is never evicted by subscriptions from other addresses, however many.
pub const EVICT_IDLE: Duration = Duration::from_secs(10);

const DIALECT: &str = "http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet";

/// The two topics every motion change is sent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// `tns1:RuleEngine/CellMotionDetector/Motion`, data `IsMotion`.
    CellMotion,
    /// `tns1:VideoSource/MotionAlarm`, data `State`.
    MotionAlarm,
}

impl Topic {
    /// The topic expression (ConcreteSet dialect).
    pub fn expression(self) -> &'static str {
        match self {
            Topic::CellMotion => "tns1:RuleEngine/CellMotionDetector/Motion",
            Topic::MotionAlarm => "tns1:VideoSource/MotionAlarm",
        }
    }
}

/// One queued notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Its topic.
    pub topic: Topic,
    /// `UtcTime`: when the motion changed (the frame's wall-clock time for a scripted alarm).
    pub utc: WallTime,
    /// Motion on or off.
    pub on: bool,
    /// `PropertyOperation="Initialized"` (the state at subscription or synchronization) rather
    /// than `Changed`.
    pub initialized: bool,
}

impl Notification {
    /// The `wsnt:NotificationMessage` element.
    pub fn to_xml(&self) -> String {
        let op = if self.initialized {
            "Initialized"
        } else {
            "Changed"
        };
        let (source, data) = match self.topic {
            Topic::CellMotion => (
                "<tt:SimpleItem Name=\"VideoSourceConfigurationToken\" Value=\"source_config\"/><tt:SimpleItem Name=\"VideoAnalyticsConfigurationToken\" Value=\"analytics\"/><tt:SimpleItem Name=\"Rule\" Value=\"MotionRule\"/>",
                "IsMotion",
            ),
            Topic::MotionAlarm => ("<tt:SimpleItem Name=\"Source\" Value=\"source\"/>", "State"),
        };
        format!(
            "<wsnt:NotificationMessage><wsnt:Topic Dialect=\"{DIALECT}\">{}</wsnt:Topic><wsnt:Message><tt:Message UtcTime=\"{}\" PropertyOperation=\"{op}\"><tt:Source>{source}</tt:Source><tt:Data><tt:SimpleItem Name=\"{data}\" Value=\"{}\"/></tt:Data></tt:Message></wsnt:Message></wsnt:NotificationMessage>",
            self.topic.expression(),
            self.utc.to_rfc3339(),
            self.on
        )
    }
}

#[derive(Debug)]
struct Subscription {
    expires: WallTime,
    /// The client address that made it ([`nvrkit_net::addr_key`]), when known.
    owner: Option<IpAddr>,
    /// Its last request: creation, a pull (a long poll pulls every 250 ms while it waits), a
    /// renewal or a synchronization.
    used: WallTime,
    queue: VecDeque<Notification>,
    dropped: u64,
}

impl Subscription {
    /// Queues a motion state on both topics, dropping the oldest past [`MAX_QUEUE`].
    fn enqueue(&mut self, on: bool, utc: WallTime, initialized: bool) {
        for topic in [Topic::CellMotion, Topic::MotionAlarm] {
            if self.queue.len() >= MAX_QUEUE {
                self.queue.pop_front();
                self.dropped += 1;
            }
            self.queue.push_back(Notification {
                topic,
                utc,
                on,
                initialized,
            });
        }
    }
}

#[derive(Debug, Default)]
struct State {
    subs: HashMap<String, Subscription>,
    motion: bool,
    changed_at: Option<WallTime>,
}

/// The event state of one device: its subscriptions and the motion state. Shared by the HTTP
/// handlers (which pull) and the alarm scheduler (which publishes).
#[derive(Debug)]
pub struct Hub {
    state: Mutex<State>,
    /// Bumped on every publish and unsubscribe: long polls wait for a change.
    seq: watch::Sender<u64>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

/// What [`Hub::pull`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The messages, oldest first (at most the limit asked).
    pub messages: Vec<Notification>,
    /// The subscription's termination time.
    pub expires: WallTime,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn no_subscription(id: &str) -> Fault {
    Fault {
        code: "env:Sender",
        subcode: "ter:InvalidArgVal",
        reason: format!(
            "no subscription {:?} (it expired, went unpulled for {}s, was evicted for a newer one, was unsubscribed, or never existed)",
            id.chars().take(64).collect::<String>(),
            KEEP_ALIVE.as_secs()
        ),
    }
}

impl Hub {
    /// A device with no subscriptions and no motion.
    pub fn new() -> Hub {
        Hub {
            state: Mutex::new(State::default()),
            seq: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.seq.send_modify(|s| *s = s.wrapping_add(1));
    }

    /// A receiver that sees every later publish (subscribe before pulling, then wait on it).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.seq.subscribe()
    }

    /// The number of live subscriptions at `now`.
    pub fn subscriptions(&self, now: WallTime) -> usize {
        let mut s = self.lock();
        sweep(&mut s, now);
        s.subs.len()
    }

    /// Creates a subscription for client `from` ending at `expires` (clamped to
    /// [`MIN_LIFETIME`]..[`MAX_LIFETIME`] from `now`), with the current state queued as
    /// `Initialized`. On a full device one subscription is evicted first (see the module
    /// documentation). Returns its id and termination time.
    pub fn subscribe(
        &self,
        from: Option<IpAddr>,
        now: WallTime,
        expires: WallTime,
    ) -> Result<(String, WallTime), Fault> {
        let (evicted, id, expires) = {
            let mut s = self.lock();
            sweep(&mut s, now);
            let evicted = if s.subs.len() >= MAX_SUBSCRIPTIONS {
                let victim = victim(&s, now);
                if let Some(v) = &victim {
                    tracing::debug!(
                        "ONVIF events: {MAX_SUBSCRIPTIONS} subscriptions; evicting {v} for a new one"
                    );
                    s.subs.remove(v);
                }
                if victim.is_none() {
                    return Err(Fault {
                        code: "env:Receiver",
                        subcode: "ter:Action",
                        reason: format!(
                            "at most {MAX_SUBSCRIPTIONS} subscriptions per device, each in use; unsubscribe or let one expire"
                        ),
                    });
                }
                true
            } else {
                false
            };
            let expires = clamp_expiry(now, expires);
            let id = format!("{:032x}", rand::random::<u128>());
            let mut sub = Subscription {
                expires,
                owner: from.map(nvrkit_net::addr_key),
                used: now,
                queue: VecDeque::new(),
                dropped: 0,
            };
            sub.enqueue(s.motion, s.changed_at.unwrap_or(now), true);
            s.subs.insert(id.clone(), sub);
            (evicted, id, expires)
        };
        if evicted {
            // Its long poll, if one waits, ends now with the no-such-subscription fault.
            self.bump();
        }
        Ok((id, expires))
    }

    /// Publishes a motion change at `utc` to every live subscription.
    pub fn publish(&self, on: bool, utc: WallTime, now: WallTime) {
        {
            let mut s = self.lock();
            sweep(&mut s, now);
            s.motion = on;
            s.changed_at = Some(utc);
            for sub in s.subs.values_mut() {
                sub.enqueue(on, utc, false);
            }
        }
        self.bump();
    }

    /// Takes up to `limit` (at most [`MAX_MESSAGE_LIMIT`]) queued messages of subscription `id`.
    pub fn pull(&self, id: &str, limit: usize, now: WallTime) -> Result<Pulled, Fault> {
        let mut s = self.lock();
        sweep(&mut s, now);
        let sub = s.subs.get_mut(id).ok_or_else(|| no_subscription(id))?;
        sub.used = now;
        let n = limit.clamp(1, MAX_MESSAGE_LIMIT).min(sub.queue.len());
        Ok(Pulled {
            messages: sub.queue.drain(..n).collect(),
            expires: sub.expires,
        })
    }

    /// Subscription `id`'s termination time, if it is live at `now`.
    pub fn expires(&self, id: &str, now: WallTime) -> Result<WallTime, Fault> {
        let mut s = self.lock();
        sweep(&mut s, now);
        s.subs
            .get(id)
            .map(|sub| sub.expires)
            .ok_or_else(|| no_subscription(id))
    }

    /// Messages dropped from subscription `id`'s full queue so far.
    pub fn dropped(&self, id: &str) -> Option<u64> {
        self.lock().subs.get(id).map(|s| s.dropped)
    }

    /// Sets subscription `id`'s termination time (clamped as at [`Hub::subscribe`]).
    pub fn renew(&self, id: &str, now: WallTime, expires: WallTime) -> Result<WallTime, Fault> {
        let mut s = self.lock();
        sweep(&mut s, now);
        let sub = s.subs.get_mut(id).ok_or_else(|| no_subscription(id))?;
        sub.used = now;
        sub.expires = clamp_expiry(now, expires);
        Ok(sub.expires)
    }

    /// Ends subscription `id`.
    pub fn unsubscribe(&self, id: &str, now: WallTime) -> Result<(), Fault> {
        let removed = {
            let mut s = self.lock();
            sweep(&mut s, now);
            s.subs.remove(id)
        };
        self.bump();
        removed.map(drop).ok_or_else(|| no_subscription(id))
    }

    /// Queues the current state as `Initialized` messages for subscription `id`.
    pub fn synchronize(&self, id: &str, now: WallTime) -> Result<(), Fault> {
        {
            let mut s = self.lock();
            sweep(&mut s, now);
            let (on, utc) = (s.motion, s.changed_at.unwrap_or(now));
            let sub = s.subs.get_mut(id).ok_or_else(|| no_subscription(id))?;
            sub.used = now;
            sub.enqueue(on, utc, true);
        }
        self.bump();
        Ok(())
    }
}

fn sweep(s: &mut State, now: WallTime) {
    let keep_alive = micros(KEEP_ALIVE);
    s.subs
        .retain(|_, sub| sub.expires > now && now.micros_since(sub.used) < keep_alive);
}

/// The subscription a new one replaces on a full device: of the client address holding the
/// most (a subscription of unknown origin counts as its own client), the one idle longest.
/// Ties between addresses go to the idler subscription. An address's only subscription is
/// taken only when idle for [`EVICT_IDLE`] (else `None`: the new one is refused), so 16
/// attacking addresses cannot keep evicting a client that pulls. Linear in the (at most 16)
/// subscriptions.
fn victim(s: &State, now: WallTime) -> Option<String> {
    let mut held: HashMap<Option<IpAddr>, usize> = HashMap::new();
    for sub in s.subs.values() {
        if sub.owner.is_some() {
            *held.entry(sub.owner).or_default() += 1;
        }
    }
    s.subs
        .iter()
        .max_by_key(|(id, sub)| {
            let n = sub.owner.map_or(1, |_| held[&sub.owner]);
            // The id breaks exact ties, so the choice does not depend on hash order.
            (
                n,
                now.micros_since(sub.used),
                std::cmp::Reverse(id.as_str()),
            )
        })
        .filter(|(_, sub)| {
            // Subscriptions of unknown origin count together here.
            let same = s.subs.values().filter(|o| o.owner == sub.owner).count();
            same >= 2 || now.micros_since(sub.used) >= micros(EVICT_IDLE)
        })
        .map(|(id, _)| id.clone())
}

fn clamp_expiry(now: WallTime, asked: WallTime) -> WallTime {
    let lo = now.add_micros(micros(MIN_LIFETIME));
    let hi = now.add_micros(micros(MAX_LIFETIME));
    asked.max(lo).min(hi)
}

/// Reads an `xs:duration` (`PT60S`, `PT1M30.5S`, `P1DT2H`): days, hours, minutes and seconds
/// (years and months are refused: their length varies). Linear; at most 32 bytes.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.len() > 32 {
        return None;
    }
    let rest = s.strip_prefix('P')?;
    let mut total = 0f64;
    let mut in_time = false;
    let mut num = String::new();
    let mut any = false;
    for c in rest.chars() {
        match c {
            'T' if !in_time && num.is_empty() => in_time = true,
            '0'..='9' | '.' => num.push(c),
            'D' | 'H' | 'M' | 'S' => {
                let v: f64 = num.parse().ok()?;
                num.clear();
                let unit = match (c, in_time) {
                    ('D', false) => 86_400.0,
                    ('H', true) => 3_600.0,
                    ('M', true) => 60.0,
                    ('S', true) => 1.0,
                    _ => return None,
                };
                total += v * unit;
                any = true;
            }
            _ => return None,
        }
    }
    if !num.is_empty() || !any || !total.is_finite() {
        return None;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// A termination time as requests give it: an `xs:dateTime` or an `xs:duration` from `now`.
pub fn parse_termination(s: &str, now: WallTime) -> Option<WallTime> {
    let s = s.trim();
    if s.starts_with('P') {
        return parse_duration(s).map(|d| now.add_micros(micros(d.min(MAX_LIFETIME * 2))));
    }
    WallTime::parse_rfc3339(s).ok()
}

/// The subscription a request names: the id in its URL path (`path_id`), else the last
/// segment of its WS-Addressing `To` when that is a subscription address.
pub fn subscription_id<'a>(req: &'a Request, path_id: Option<&'a str>) -> Option<&'a str> {
    path_id.or_else(|| {
        let to = req.to.as_deref()?;
        let at = to.find(SUBSCRIPTION_PATH)?;
        Some(&to[at + SUBSCRIPTION_PATH.len()..])
    })
}

/// Whether `req` is an event-service or subscription action (handled by [`answer`]).
pub fn is_event_action(req: &Request) -> bool {
    req.ns == NS_EVENTS || req.ns == NS_WSNT
}

/// What to do with an event request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Reply with this body now.
    Body(String),
    /// A `PullMessages`: pull from subscription `id` up to `limit` messages, waiting until
    /// `wait` has passed for the first one ([`pull_response`] writes the answer).
    Pull {
        /// The subscription.
        id: String,
        /// `MessageLimit` (clamped to 1..=[`MAX_MESSAGE_LIMIT`]).
        limit: usize,
        /// `Timeout`, at most [`MAX_PULL_WAIT`].
        wait: Duration,
    },
}

/// The answer to an event request on `hub`, reached at `at` from client address `from`;
/// `path_id` is the subscription id of the URL it was posted to.
pub fn answer(
    hub: &Hub,
    at: &Reached,
    from: Option<IpAddr>,
    req: &Request,
    path_id: Option<&str>,
    now: WallTime,
) -> Result<Answer, Fault> {
    let sub = || {
        subscription_id(req, path_id).ok_or_else(|| Fault {
            code: "env:Sender",
            subcode: "ter:InvalidArgVal",
            reason: format!(
                "{} must be sent to a subscription address ({SUBSCRIPTION_PATH}…)",
                req.action
            ),
        })
    };
    let body = match (req.ns.as_str(), req.action.as_str()) {
        (NS_EVENTS, "GetServiceCapabilities") => format!(
            "<tev:GetServiceCapabilitiesResponse><tev:Capabilities WSSubscriptionPolicySupport=\"false\" WSPullPointSupport=\"true\" WSPausableSubscriptionManagerInterfaceSupport=\"false\" MaxNotificationProducers=\"0\" MaxPullPoints=\"{MAX_SUBSCRIPTIONS}\" PersistentNotificationStorage=\"false\"/></tev:GetServiceCapabilitiesResponse>"
        ),
        (NS_EVENTS, "GetEventProperties") => event_properties(),
        (NS_EVENTS, "CreatePullPointSubscription") => {
            let asked = match req.field("InitialTerminationTime") {
                Some(t) => parse_termination(t, now).ok_or_else(|| {
                    Fault::sender(
                        "ter:InvalidArgVal",
                        format!("InitialTerminationTime {t:?} is neither an xs:dateTime nor an xs:duration"),
                    )
                })?,
                None => now.add_micros(micros(DEFAULT_LIFETIME)),
            };
            let (id, expires) = hub.subscribe(from, now, asked)?;
            format!(
                "<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference><wsa5:Address>{}</wsa5:Address></tev:SubscriptionReference><wsnt:CurrentTime>{}</wsnt:CurrentTime><wsnt:TerminationTime>{}</wsnt:TerminationTime></tev:CreatePullPointSubscriptionResponse>",
                esc(&at.http(&format!("{SUBSCRIPTION_PATH}{id}"))),
                now.to_rfc3339(),
                expires.to_rfc3339()
            )
        }
        (NS_EVENTS, "PullMessages") => {
            let id = sub()?.to_owned();
            let wait = match req.field("Timeout") {
                Some(t) => parse_duration(t).ok_or_else(|| {
                    Fault::sender(
                        "ter:InvalidArgVal",
                        format!("Timeout {t:?} is not an xs:duration"),
                    )
                })?,
                None => MAX_PULL_WAIT,
            };
            let limit = match req.field("MessageLimit") {
                Some(l) => l.trim().parse::<u64>().map_err(|_| {
                    Fault::sender(
                        "ter:InvalidArgVal",
                        format!("MessageLimit {l:?} is not a count"),
                    )
                })?,
                None => 1,
            };
            // The subscription must exist now (the long poll checks again).
            hub.expires(&id, now)?;
            let limit = usize::try_from(limit).unwrap_or(MAX_MESSAGE_LIMIT);
            return Ok(Answer::Pull {
                id,
                limit: limit.clamp(1, MAX_MESSAGE_LIMIT),
                wait: wait.min(MAX_PULL_WAIT),
            });
        }
        (NS_EVENTS, "SetSynchronizationPoint") => {
            hub.synchronize(sub()?, now)?;
            "<tev:SetSynchronizationPointResponse/>".to_owned()
        }
        (NS_WSNT, "Renew") => {
            let id = sub()?;
            let asked = match req.field("TerminationTime") {
                Some(t) => parse_termination(t, now).ok_or_else(|| {
                    Fault::sender(
                        "ter:InvalidArgVal",
                        format!(
                            "TerminationTime {t:?} is neither an xs:dateTime nor an xs:duration"
                        ),
                    )
                })?,
                None => now.add_micros(micros(DEFAULT_LIFETIME)),
            };
            let expires = hub.renew(id, now, asked)?;
            format!(
                "<wsnt:RenewResponse><wsnt:TerminationTime>{}</wsnt:TerminationTime><wsnt:CurrentTime>{}</wsnt:CurrentTime></wsnt:RenewResponse>",
                expires.to_rfc3339(),
                now.to_rfc3339()
            )
        }
        (NS_WSNT, "Unsubscribe") => {
            hub.unsubscribe(sub()?, now)?;
            "<wsnt:UnsubscribeResponse/>".to_owned()
        }
        _ => {
            return Err(Fault {
                code: "env:Receiver",
                subcode: "ter:ActionNotSupported",
                reason: format!("{} ({}) is not supported", req.action, req.ns),
            });
        }
    };
    Ok(Answer::Body(body))
}

/// The `PullMessagesResponse` body for what was pulled at `now`.
pub fn pull_response(pulled: &Pulled, now: WallTime) -> String {
    let messages: String = pulled.messages.iter().map(Notification::to_xml).collect();
    format!(
        "<tev:PullMessagesResponse><tev:CurrentTime>{}</tev:CurrentTime><tev:TerminationTime>{}</tev:TerminationTime>{messages}</tev:PullMessagesResponse>",
        now.to_rfc3339(),
        pulled.expires.to_rfc3339()
    )
}

fn event_properties() -> String {
    let description = |source: &str, data: &str| {
        format!(
            "<tt:MessageDescription IsProperty=\"true\"><tt:Source>{source}</tt:Source><tt:Data><tt:SimpleItemDescription Name=\"{data}\" Type=\"xs:boolean\"/></tt:Data></tt:MessageDescription>"
        )
    };
    let cell = description(
        "<tt:SimpleItemDescription Name=\"VideoSourceConfigurationToken\" Type=\"tt:ReferenceToken\"/><tt:SimpleItemDescription Name=\"VideoAnalyticsConfigurationToken\" Type=\"tt:ReferenceToken\"/><tt:SimpleItemDescription Name=\"Rule\" Type=\"xs:string\"/>",
        "IsMotion",
    );
    let alarm = description(
        "<tt:SimpleItemDescription Name=\"Source\" Type=\"tt:ReferenceToken\"/>",
        "State",
    );
    format!(
        "<tev:GetEventPropertiesResponse><tev:TopicNamespaceLocation>http://www.onvif.org/onvif/ver10/topics/topicns.xml</tev:TopicNamespaceLocation><wsnt:FixedTopicSet>true</wsnt:FixedTopicSet><wstop:TopicSet><tns1:RuleEngine><tns1:CellMotionDetector><tns1:Motion wstop:topic=\"true\">{cell}</tns1:Motion></tns1:CellMotionDetector></tns1:RuleEngine><tns1:VideoSource><tns1:MotionAlarm wstop:topic=\"true\">{alarm}</tns1:MotionAlarm></tns1:VideoSource></wstop:TopicSet><wsnt:TopicExpressionDialect>{DIALECT}</wsnt:TopicExpressionDialect><wsnt:TopicExpressionDialect>http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete</wsnt:TopicExpressionDialect><tev:MessageContentFilterDialect>http://www.onvif.org/ver10/tev/messageContentFilter/ItemFilter</tev:MessageContentFilterDialect><tev:MessageContentSchemaLocation>http://www.onvif.org/onvif/ver10/schema/onvif.xsd</tev:MessageContentSchemaLocation></tev:GetEventPropertiesResponse>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onvif::soap;

    fn t(s: &str) -> WallTime {
        WallTime::parse_rfc3339(s).unwrap()
    }

    fn req(ns: &str, action: &str, fields: &[(&str, &str)]) -> Request {
        Request {
            ns: ns.into(),
            action: action.into(),
            fields: fields
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
            ..Request::default()
        }
    }

    fn at() -> Reached {
        Reached {
            host: "127.0.0.1".into(),
            http_port: 8000,
        }
    }

    fn body(a: Answer) -> String {
        match a {
            Answer::Body(b) => b,
            other => panic!("not a body: {other:?}"),
        }
    }

    fn subscribe(hub: &Hub, now: WallTime, ttl: &str) -> String {
        subscribe_from(hub, None, now, ttl)
    }

    fn subscribe_from(hub: &Hub, from: Option<IpAddr>, now: WallTime, ttl: &str) -> String {
        let b = body(
            answer(
                hub,
                &at(),
                from,
                &req(
                    NS_EVENTS,
                    "CreatePullPointSubscription",
                    &[("InitialTerminationTime", ttl)],
                ),
                None,
                now,
            )
            .unwrap(),
        );
        let addr = b.split("<wsa5:Address>").nth(1).unwrap();
        let addr = addr.split('<').next().unwrap();
        assert!(addr.starts_with("http://127.0.0.1:8000/onvif/events/subscription/"));
        addr.rsplit('/').next().unwrap().to_owned()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("PT60S"), Some(Duration::from_secs(60)));
        assert_eq!(
            parse_duration("PT1M30.5S"),
            Some(Duration::from_millis(90_500))
        );
        assert_eq!(parse_duration("P1DT1H"), Some(Duration::from_secs(90_000)));
        assert_eq!(parse_duration("PT0S"), Some(Duration::ZERO));
        for bad in [
            "", "P", "PT", "60S", "P1Y", "PT1D", "PT-1S", "PT1", "PT1.2.3S", "PTxS",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_duration(&format!("PT{}S", "9".repeat(40))), None);
        let now = t("2026-12-03T12:00:00Z");
        assert_eq!(
            parse_termination("PT10M", now),
            Some(t("2026-12-03T12:10:00Z"))
        );
        assert_eq!(
            parse_termination("2026-12-03T12:05:00Z", now),
            Some(t("2026-12-03T12:05:00Z"))
        );
        assert_eq!(parse_termination("soon", now), None);
    }

    #[test]
    fn a_subscription_gets_its_initial_state_then_every_change_on_both_topics() {
        let hub = Hub::new();
        let now = t("2026-12-03T12:00:00Z");
        let id = subscribe(&hub, now, "PT60S");
        let got = hub.pull(&id, 10, now).unwrap();
        assert_eq!(got.messages.len(), 2);
        assert!(got.messages.iter().all(|m| m.initialized && !m.on));
        assert_eq!(got.expires, t("2026-12-03T12:01:00Z"));
        let at_frame = t("2026-12-03T12:00:03.2Z");
        hub.publish(true, at_frame, now);
        hub.publish(false, t("2026-12-03T12:00:04.2Z"), now);
        let got = hub.pull(&id, 3, now).unwrap();
        assert_eq!(got.messages.len(), 3, "MessageLimit holds");
        assert_eq!(got.messages[0].topic, Topic::CellMotion);
        assert_eq!(got.messages[1].topic, Topic::MotionAlarm);
        assert!(got.messages[0].on && !got.messages[0].initialized);
        assert_eq!(got.messages[0].utc, at_frame);
        let xml = pull_response(&got, now);
        assert!(xml.contains("tns1:RuleEngine/CellMotionDetector/Motion</wsnt:Topic>"));
        assert!(
            xml.contains("UtcTime=\"2026-12-03T12:00:03.200000Z\" PropertyOperation=\"Changed\"")
        );
        assert!(xml.contains("<tt:SimpleItem Name=\"IsMotion\" Value=\"true\"/>"));
        assert!(xml.contains("<tt:SimpleItem Name=\"State\" Value=\"true\"/>"));
        // The answer is a well-formed envelope.
        soap::parse(soap::envelope("", &xml).as_bytes()).unwrap();
        assert_eq!(hub.pull(&id, 10, now).unwrap().messages.len(), 1);
        assert!(hub.pull(&id, 10, now).unwrap().messages.is_empty());
    }

    #[test]
    fn subscriptions_are_capped_expire_and_are_renewed() {
        let hub = Hub::new();
        let now = t("2026-12-03T12:00:00Z");
        let ids: Vec<String> = (0..MAX_SUBSCRIPTIONS)
            .map(|_| subscribe(&hub, now, "PT30S"))
            .collect();
        // One more is not refused: the idlest is evicted (all from one unknown client here).
        let one_more = subscribe(&hub, now.add_micros(1), "PT30S");
        assert_eq!(hub.subscriptions(now.add_micros(1)), MAX_SUBSCRIPTIONS);
        assert!(hub.pull(&one_more, 1, now.add_micros(1)).is_ok());
        let gone: Vec<&String> = ids
            .iter()
            .filter(|id| hub.expires(id, now.add_micros(1)).is_err())
            .collect();
        assert_eq!(gone.len(), 1, "exactly one evicted");
        let ids: Vec<String> = ids
            .iter()
            .filter(|id| !gone.contains(id))
            .cloned()
            .collect();
        // Renew one; the others expire at 30 s.
        let renew = req(NS_WSNT, "Renew", &[("TerminationTime", "PT120S")]);
        let b = body(answer(&hub, &at(), None, &renew, Some(&ids[0]), now).unwrap());
        assert!(
            b.contains("<wsnt:TerminationTime>2026-12-03T12:02:00Z<"),
            "{b}"
        );
        let later = t("2026-12-03T12:00:31Z");
        assert_eq!(hub.subscriptions(later), 1);
        assert!(hub.pull(&one_more, 1, later).is_err(), "expired too");
        assert!(hub.pull(&ids[1], 1, later).is_err(), "expired");
        assert!(hub.pull(&ids[0], 1, later).is_ok());
        // A free slot again.
        subscribe(&hub, later, "PT30S");
        // Lifetimes are clamped: a day becomes an hour, the past becomes 10 s.
        let id = subscribe(&hub, now, "P1D");
        assert_eq!(
            hub.pull(&id, 1, now).unwrap().expires,
            t("2026-12-03T13:00:00Z")
        );
        let id = subscribe(&hub, now, "2020-01-01T00:00:00Z");
        assert_eq!(
            hub.pull(&id, 1, now).unwrap().expires,
            t("2026-12-03T12:00:10Z")
        );
        // Unsubscribe ends it; a second time is a fault.
        let un = req(NS_WSNT, "Unsubscribe", &[]);
        body(answer(&hub, &at(), None, &un, Some(&id), now).unwrap());
        assert!(answer(&hub, &at(), None, &un, Some(&id), now).is_err());
    }

    #[test]
    fn a_queue_is_bounded_and_drops_the_oldest() {
        let hub = Hub::new();
        let now = t("2026-12-03T12:00:00Z");
        let id = subscribe(&hub, now, "PT60S");
        for i in 0..MAX_QUEUE {
            hub.publish(i % 2 == 0, now.add_micros(i as i64), now);
        }
        // 2 initial + 2 per publish into a queue of MAX_QUEUE.
        assert_eq!(hub.dropped(&id), Some(MAX_QUEUE as u64 + 2));
        let got = hub.pull(&id, MAX_MESSAGE_LIMIT, now).unwrap();
        assert_eq!(got.messages.len(), MAX_QUEUE.min(MAX_MESSAGE_LIMIT));
        assert!(
            got.messages.iter().all(|m| !m.initialized),
            "the oldest went first"
        );
        assert_eq!(
            got.messages.last().unwrap().utc,
            now.add_micros(MAX_QUEUE as i64 - 1)
        );
    }

    #[test]
    fn pull_messages_asks_for_a_bounded_wait() {
        let hub = Hub::new();
        let now = t("2026-12-03T12:00:00Z");
        let id = subscribe(&hub, now, "PT60S");
        let pull = req(
            NS_EVENTS,
            "PullMessages",
            &[("Timeout", "PT1H"), ("MessageLimit", "100000")],
        );
        assert_eq!(
            answer(&hub, &at(), None, &pull, Some(&id), now).unwrap(),
            Answer::Pull {
                id: id.clone(),
                limit: MAX_MESSAGE_LIMIT,
                wait: MAX_PULL_WAIT
            }
        );
        // By WS-Addressing To, as some clients send it to the event service.
        let mut by_to = req(NS_EVENTS, "PullMessages", &[("Timeout", "PT2S")]);
        by_to.to = Some(format!("http://127.0.0.1:8000{SUBSCRIPTION_PATH}{id}"));
        assert!(matches!(
            answer(&hub, &at(), None, &by_to, None, now).unwrap(),
            Answer::Pull { wait, limit: 1, .. } if wait == Duration::from_secs(2)
        ));
        // No subscription, or a bad Timeout: faults.
        assert!(answer(&hub, &at(), None, &pull, None, now).is_err());
        assert!(answer(&hub, &at(), None, &pull, Some("nope"), now).is_err());
        let bad = req(NS_EVENTS, "PullMessages", &[("Timeout", "forever")]);
        assert!(answer(&hub, &at(), None, &bad, Some(&id), now).is_err());
    }

    #[test]
    fn an_unpulled_subscription_dies_at_the_keep_alive_before_its_termination_time() {
        let hub = Hub::new();
        let now = t("2026-12-03T12:00:00Z");
        let idle = subscribe(&hub, now, "PT1H");
        let pulled = subscribe(&hub, now, "PT1H");
        let renewed = subscribe(&hub, now, "PT1H");
        let half = now.add_micros(micros(KEEP_ALIVE) / 2);
        hub.pull(&pulled, 1, half).unwrap();
        hub.renew(&renewed, half, half.add_micros(micros(MAX_LIFETIME)))
            .unwrap();
        let past = now.add_micros(micros(KEEP_ALIVE));
        assert!(hub.expires(&idle, past).is_err(), "unpulled for KEEP_ALIVE");
        assert!(hub.pull(&pulled, 1, past).is_ok());
        assert!(hub.expires(&renewed, past).is_ok());
        // A client pulling back to back is never swept, for as long as its lifetime lasts.
        let mut at = past;
        for _ in 0..100 {
            at = at.add_micros(micros(MAX_PULL_WAIT));
            hub.pull(&pulled, 1, at).unwrap();
        }
        assert_eq!(hub.subscriptions(at), 1, "only the one still pulled");
        let why = hub.pull(&idle, 1, at).unwrap_err().reason;
        assert!(why.contains("unpulled for 60s"), "{why}");
    }

    #[test]
    fn subscriptions_from_many_addresses_do_not_evict_a_client_that_pulls() {
        // review-rtsp.md M1: 15 attacking addresses hold one each, a 16th keeps subscribing.
        let hub = Hub::new();
        let legit: IpAddr = "127.0.0.3".parse().unwrap();
        let attacker = |i: u8| -> IpAddr { format!("127.0.1.{i}").parse().unwrap() };
        let start = t("2026-12-03T12:00:00Z");
        let mine = subscribe_from(&hub, Some(legit), start, "PT1H");
        let held: Vec<String> = (0..15)
            .map(|i| subscribe_from(&hub, Some(attacker(i)), start, "PT1H"))
            .collect();
        let mut now = start.add_micros(1_000);
        for round in 0..100 {
            now = now.add_micros(250_000);
            // The legitimate client pulls every 250 ms; the attackers' 15 are pulled too.
            assert!(hub.pull(&mine, 1, now).is_ok(), "round {round}: evicted");
            held.iter()
                .for_each(|id| assert!(hub.pull(id, 1, now).is_ok()));
            let refused = hub.subscribe(Some(attacker(200)), now, now.add_micros(3_600_000_000));
            assert!(
                refused.is_err(),
                "round {round}: a 16th address evicted someone in use"
            );
        }
        // Once the legitimate client stops pulling for EVICT_IDLE, it may be replaced.
        now = now.add_micros(micros(EVICT_IDLE) + 1);
        assert!(
            hub.subscribe(Some(attacker(200)), now, now.add_micros(3_600_000_000))
                .is_ok()
        );
    }

    #[test]
    fn a_subscription_flood_from_one_address_evicts_only_its_own() {
        let hub = Hub::new();
        let attacker: IpAddr = "127.0.0.2".parse().unwrap();
        let legit: IpAddr = "127.0.0.3".parse().unwrap();
        let start = t("2026-12-03T12:00:00Z");
        // The attacker fills the device first.
        for i in 0..MAX_SUBSCRIPTIONS {
            subscribe_from(&hub, Some(attacker), start.add_micros(i as i64), "PT1H");
        }
        // The legitimate client still subscribes (an attacker's is evicted), and pulls every
        // 30 s while the attacker creates 1000 more in each interval.
        let mut now = start.add_micros(1_000);
        let mine = subscribe_from(&hub, Some(legit), now, "PT1H");
        assert_eq!(hub.subscriptions(now), MAX_SUBSCRIPTIONS);
        let mut attackers = Vec::new();
        for round in 0..10 {
            for _ in 0..1000 {
                now = now.add_micros(30);
                attackers.push(subscribe_from(&hub, Some(attacker), now, "PT1H"));
            }
            hub.publish(round % 2 == 0, now, now);
            let got = hub.pull(&mine, MAX_MESSAGE_LIMIT, now).unwrap();
            assert!(
                got.messages
                    .iter()
                    .any(|m| !m.initialized && m.on == (round % 2 == 0)),
                "round {round}: {got:?}"
            );
        }
        // Even when the attacker's newest is fresher than the legitimate one's last pull.
        now = now.add_micros(micros(MAX_PULL_WAIT) - 1);
        for _ in 0..100 {
            now = now.add_micros(1);
            subscribe_from(&hub, Some(attacker), now, "PT1H");
        }
        assert!(hub.pull(&mine, 1, now).is_ok());
        assert_eq!(hub.subscriptions(now), MAX_SUBSCRIPTIONS);
        // None of the earlier flood is live: the last 100 replaced them.
        let live: Vec<&String> = attackers
            .iter()
            .filter(|id| hub.expires(id, now).is_ok())
            .collect();
        assert!(
            live.is_empty(),
            "the 100 later ones replaced them: {live:?}"
        );
        // Between clients of one address each, the idlest goes: a pulled one stays.
        let hub = Hub::new();
        let ids: Vec<String> = (0..MAX_SUBSCRIPTIONS)
            .map(|i| {
                let from = IpAddr::from([127, 0, 1, i as u8]);
                subscribe_from(&hub, Some(from), start, "PT1H")
            })
            .collect();
        let later = start.add_micros(micros(EVICT_IDLE) + 1_000_000);
        for id in &ids[1..] {
            hub.pull(id, 1, later).unwrap();
        }
        subscribe_from(&hub, Some(attacker), later, "PT1H");
        assert!(hub.expires(&ids[0], later).is_err(), "the one never pulled");
        assert!(ids[1..].iter().all(|id| hub.expires(id, later).is_ok()));
    }

    #[test]
    fn properties_name_both_topics_and_parse() {
        let hub = Hub::new();
        let b = body(
            answer(
                &hub,
                &at(),
                None,
                &req(NS_EVENTS, "GetEventProperties", &[]),
                None,
                t("2026-12-03T12:00:00Z"),
            )
            .unwrap(),
        );
        assert!(b.contains("<tns1:CellMotionDetector><tns1:Motion wstop:topic=\"true\">"));
        assert!(b.contains("Name=\"IsMotion\""));
        assert!(b.contains("<tns1:MotionAlarm wstop:topic=\"true\">"));
        soap::parse(soap::envelope("", &b).as_bytes()).unwrap();
    }
}
