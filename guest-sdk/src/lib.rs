//! Write Sluice stream transforms in Rust.
//!
//! A transform is a type that implements [`Transform`]: it is built once per instance from the
//! deployment's [`Config`], then called once per record with the record and a [`Writer`] for its
//! outputs. One line, [`export!`], turns it into a WebAssembly component for the Sluice runtime.
//! The generated bindings stay inside this crate; the same code runs natively, so transform logic
//! is unit-tested with plain `cargo test` through the [`testing`] module.
//!
//! A [`StatefulTransform`] also keeps keyed [`state`] and sets event-time timers (windows,
//! running totals); export it with [`export_stateful!`].
//!
//! Beside that: [`json`] rewrites JSON records field by field, keeping the bytes of what does
//! not change; [`tables`] looks keys up in the pipeline's lookup tables; [`log`] and the macros
//! [`trace!`], [`debug!`], [`info!`], [`warn!`] and [`error!`] write to the runtime's log.
//!
//! ```
//! use sluice_sdk::{Config, Error, Record, Transform, Writer};
//!
//! /// Upper-cases the `name` field of JSON records; drops records marked `"skip": true`.
//! struct Shout {
//!     field: String,
//! }
//!
//! impl Transform for Shout {
//!     fn init(config: &Config) -> Result<Self, Error> {
//!         config.allow_only(&["field"])?;
//!         Ok(Shout { field: config.get("field").unwrap_or("name").to_string() })
//!     }
//!
//!     fn process(&mut self, record: &Record<'_>, out: &mut Writer<'_>) -> Result<(), Error> {
//!         let mut value: serde_json::Value = record.json()?;
//!         if value["skip"] == true {
//!             return Ok(()); // no output: the record is filtered out
//!         }
//!         let name = value[&self.field]
//!             .as_str()
//!             .ok_or_else(|| Error::new(format!("field `{}` is missing or not a string", self.field)))?;
//!         value[&self.field] = name.to_uppercase().into();
//!         out.write_json(&value)
//!     }
//! }
//!
//! sluice_sdk::export!(Shout);
//!
//! // Unit-test natively, without building WebAssembly:
//! let mut shout = sluice_sdk::testing::init::<Shout>(&[]).unwrap();
//! let outputs = sluice_sdk::testing::process(&mut shout, &Record::from_value(br#"{"name":"ada"}"#)).unwrap();
//! assert_eq!(outputs[0].value_str(), Some(r#"{"name":"ADA"}"#));
//! let failed = sluice_sdk::testing::process(&mut shout, &Record::from_value(b"{}")).unwrap_err();
//! assert_eq!(failed.to_string(), "field `name` is missing or not a string");
//! ```
//!
//! Build the component with `cargo build --release --target wasm32-wasip2`; the crate must be a
//! `cdylib` (and an `rlib` too, for its native tests).
#![deny(missing_docs)]

// Generated code names its runtime by absolute path, which must resolve here too.
extern crate self as sluice_sdk;

mod columns;
mod config;
mod error;
mod guest;
pub mod json;
pub mod log;
mod record;
pub mod state;
pub mod tables;
pub mod testing;
pub mod window;
mod writer;

pub use config::Config;
pub use error::Error;
pub use record::{Header, Record};
pub use writer::{OutputRecord, Writer};

/// Not part of the API: what [`export!`] expands to, and the bindings generated from the WIT
/// contract (`wit/transform.wit`). May change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::guest::{init, on_timers, process, process_columns};
    pub use wit_bindgen;

    #[allow(missing_docs, clippy::all)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "wit",
            world: "transformer",
            pub_export_macro: true,
            runtime_path: "::sluice_sdk::__private::wit_bindgen::rt",
        });
    }

    /// The `columnar` export, which hosts call instead of `transform.process`.
    #[allow(missing_docs, clippy::all)]
    pub mod columnar_bindings {
        wit_bindgen::generate!({
            path: "wit",
            world: "columnar-parts",
            pub_export_macro: true,
            runtime_path: "::sluice_sdk::__private::wit_bindgen::rt",
            with: {
                "sluice:transform/types@0.1.0": crate::__private::bindings::sluice::transform::types,
            },
            export_macro_name: "__export_columnar_parts",
        });
    }

    /// The `stateful-transformer` world's own parts: `state`, `timers` and the `stateful` export.
    #[allow(missing_docs, clippy::all)]
    pub mod stateful_bindings {
        wit_bindgen::generate!({
            path: "wit",
            world: "stateful-parts",
            pub_export_macro: true,
            runtime_path: "::sluice_sdk::__private::wit_bindgen::rt",
            with: {
                "sluice:transform/types@0.1.0": crate::__private::bindings::sluice::transform::types,
            },
            export_macro_name: "__export_stateful_parts",
        });
    }
}

/// The contract's interfaces, as the bindings name them.
mod wit {
    pub use crate::__private::bindings::sluice::transform::*;
    pub use crate::__private::columnar_bindings::exports::sluice::transform::columnar;
}

/// A stream transform: built once per instance, then called for every record.
///
/// An instance lives as long as its partition worker, so state kept in `self` (counters, caches)
/// persists across batches, but not across restarts or redeployments.
pub trait Transform: Sized + 'static {
    /// Builds the transform from the deployment's configuration. Return an error that names the
    /// key and says what is wrong with it; the deployment is then refused with that message.
    fn init(config: &Config) -> Result<Self, Error>;

    /// Handles one record: write zero or more outputs to `out`, or return an error. On error the
    /// outputs already written for this record are discarded and the record goes to the
    /// pipeline's dead-letter topic with the error's message.
    fn process(&mut self, record: &Record<'_>, out: &mut Writer<'_>) -> Result<(), Error>;
}

/// A stateful stream transform: a [`Transform`] that keeps keyed [`state`] and sets timers,
/// which fire once stream time passes them (see [`state`] for event time). Export it with
/// [`export_stateful!`].
pub trait StatefulTransform: Transform {
    /// Handles a timer that fired: write zero or more outputs to `out` (for example a closed
    /// window's result). They are written like outputs of a record, keyed by nothing and
    /// stamped with the timer's time unless an [`OutputRecord`] says otherwise. An error is
    /// logged by the runtime and the timer's outputs are dropped.
    fn on_timer(&mut self, timer: &state::Timer, out: &mut Writer<'_>) -> Result<(), Error>;
}

/// Exports a [`StatefulTransform`] as the component's implementation of the Sluice contract's
/// `stateful-transformer` world. Use it instead of [`export!`], once per crate.
#[macro_export]
macro_rules! export_stateful {
    ($transform:ty) => {
        $crate::export!($transform);
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct SluiceStatefulExport;
            impl $crate::__private::stateful_bindings::exports::sluice::transform::stateful::Guest
                for SluiceStatefulExport
            {
                fn on_timers(
                    fired: ::std::vec::Vec<
                        $crate::__private::stateful_bindings::exports::sluice::transform::stateful::FiredTimer,
                    >,
                ) -> $crate::__private::bindings::sluice::transform::types::OutputBatch {
                    $crate::__private::on_timers::<$transform>(
                        fired.into_iter().map(|t| $crate::state::Timer { key: t.key, at: t.at }).collect(),
                    )
                }
            }
            $crate::__private::stateful_bindings::__export_stateful_parts!(
                SluiceStatefulExport with_types_in $crate::__private::stateful_bindings
            );
        };
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn(&mut $transform, &$crate::state::Timer, &mut $crate::Writer<'_>)
            -> ::std::result::Result<(), $crate::Error> =
            <$transform as $crate::StatefulTransform>::on_timer;
    };
}

/// Exports a [`Transform`] as the component's implementation of the Sluice contract.
///
/// Use it once per crate, at the top level: `sluice_sdk::export!(MyTransform);`. It does nothing
/// when the crate is built for the host, so native unit tests need no special set-up.
#[macro_export]
macro_rules! export {
    ($transform:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct SluiceExport;
            impl $crate::__private::bindings::exports::sluice::transform::transform::Guest
                for SluiceExport
            {
                fn init(config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>)
                    -> ::std::result::Result<(), ::std::string::String>
                {
                    $crate::__private::init::<$transform>(config)
                }
                fn process(
                    batch: $crate::__private::bindings::sluice::transform::types::InputBatch,
                ) -> $crate::__private::bindings::sluice::transform::types::OutputBatch {
                    $crate::__private::process::<$transform>(batch)
                }
            }
            $crate::__private::bindings::export!(SluiceExport with_types_in $crate::__private::bindings);
            impl $crate::__private::columnar_bindings::exports::sluice::transform::columnar::Guest
                for SluiceExport
            {
                fn process(
                    batch: $crate::__private::columnar_bindings::exports::sluice::transform::columnar::InputColumns,
                ) -> $crate::__private::columnar_bindings::exports::sluice::transform::columnar::OutputColumns {
                    $crate::__private::process_columns::<$transform>(batch)
                }
            }
            $crate::__private::columnar_bindings::__export_columnar_parts!(
                SluiceExport with_types_in $crate::__private::columnar_bindings
            );
        };
        // Natively, the type is still checked to be a transform (and counts as used).
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn(&$crate::Config) -> ::std::result::Result<$transform, $crate::Error> =
            <$transform as $crate::Transform>::init;
    };
}
