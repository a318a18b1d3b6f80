//! MQTT output for `nvr --mqtt` and `camevents --mqtt`: camera events as JSON, a retained motion
//! state and availability per camera, and Home Assistant MQTT discovery.
//!
//! Topics, for a camera whose topic segment ([`topic::segment`]) is `<camera>`:
//!
//! | topic | payload | retained |
//! | --- | --- | --- |
//! | `nvrkit/<camera>/event` | the event's JSON (`docs/event-schema.json`; nvr's bounded note) | no |
//! | `nvrkit/<camera>/motion` | `ON` / `OFF` | yes |
//! | `nvrkit/<camera>/availability` | `online` / `offline` | yes |
//! | `nvrkit/bridge/<client id>/availability` | `online` / `offline` (last will: `offline`) | yes |
//! | `homeassistant/binary_sensor/nvrkit_<camera>/motion/config` | discovery config | yes |
//!
//! The client is rumqttc (MQTT 3.1.1, QoS 1) over TCP or, for `mqtts://`, rustls on the ring
//! provider with Mozilla's roots ([`nvrkit_tls::client_config`]). Sending never blocks: a bounded
//! queue, drops counted; the connection is retried with backoff while the broker is down.
//!
//! Not here: subscribing (nothing is controlled over MQTT), MQTT 5, client certificates.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use nvrkit_mqtt::{Options, Publisher};
//! let broker = "mqtt://127.0.0.1:1883".parse()?;
//! let mqtt = Publisher::start(Options::new(broker, "nvr"))?;
//! mqtt.camera("garage");
//! mqtt.event("garage", r#"{"v":1,"kind":"motion"}"#);
//! mqtt.motion("garage", true);
//! mqtt.finish(std::time::Duration::from_secs(2)).await;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod error;
mod publisher;
pub mod topic;
mod url;

pub use error::{Error, UrlError};
pub use publisher::{DEFAULT_MAX_CAMERAS, DEFAULT_QUEUE, MAX_EVENT_JSON, Options, Publisher};
pub use url::{BrokerUrl, DEFAULT_PORT, DEFAULT_TLS_PORT};
