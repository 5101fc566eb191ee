//! `portcullis:tool/http`: the plugin's own HTTP interface, through the
//! call's egress gate.
//!
//! The guest's request is handed to the call's
//! [`CallEgress`](crate::egress::CallEgress) as it is (allowlist, SSRF
//! defence, limits, secrets, scrubbing and audit records all happen there),
//! and the gate's answer is mapped one to one onto the WIT `error` variant,
//! which the plugin can handle. Only a call that piled up more denials than
//! allowed ([`Suspicious`](crate::egress::Suspicious)) traps, which ends
//! the instance. `wasi_http.rs` does the same for `wasi:http`.

use super::bindings::portcullis::tool::http::{
    Error as WitError, Host, Request as WitRequest, Response as WitResponse,
};
use super::store::StoreData;
use crate::egress::{EgressError, GuestRequest, GuestTimeouts, SecretChoice};

impl Host for StoreData {
    async fn send(
        &mut self,
        request: WitRequest,
    ) -> wasmtime::Result<Result<WitResponse, WitError>> {
        let Some(egress) = self.egress.clone() else {
            return Ok(Err(WitError::Denied(
                "this plugin has no HTTP grants (none are in force while listing tools)".into(),
            )));
        };
        let outcome = egress
            .send(GuestRequest {
                method: request.method,
                url: request.url,
                headers: request.headers,
                body: request.body,
                secret: request
                    .secret
                    .map_or(SecretChoice::None, SecretChoice::Named),
                timeouts: GuestTimeouts::default(),
            })
            .await
            .map_err(wasmtime::Error::new)?;
        Ok(match outcome {
            Ok(response) => Ok(WitResponse {
                status: response.status,
                headers: response.headers,
                body: response.body,
            }),
            Err(EgressError::Denied(m)) => Err(WitError::Denied(m)),
            Err(EgressError::InvalidRequest(m)) => Err(WitError::InvalidRequest(m)),
            Err(EgressError::Timeout(m)) => Err(WitError::Timeout(m)),
            Err(EgressError::TooLarge(m)) => Err(WitError::TooLarge(m)),
            Err(EgressError::TooManyRequests(m)) => Err(WitError::TooManyRequests(m)),
            Err(EgressError::Upstream(m)) => Err(WitError::Upstream(m)),
        })
    }
}
