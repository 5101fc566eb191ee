//! The gate's secret steps: which granted secret a request gets, and
//! attaching it. A named secret must be granted (checked with the request's
//! shape, before the URL); a `wasi:http` request gets the first granted
//! secret bound to its destination. Only after every other check passed is
//! the secret checked against the destination, method and path, its value
//! fetched for this call, taught to the call's scrubber and put in a header
//! or the query: the plugin never sees it.

use super::CallEgress;
use super::gate::Refusal;
use super::request::{EgressError, SecretChoice};
use crate::policy::allowlist::Target;
use crate::secrets::{Injection, Secret, SecretPolicy, SecretRequest};
use tokio::time::Instant;

impl CallEgress {
    /// The granted secret a request names, if it names one.
    ///
    /// # Errors
    ///
    /// A denial when no secret of that name is granted to the plugin.
    pub(super) fn named_secret(
        &self,
        choice: &SecretChoice,
    ) -> Result<Option<SecretPolicy>, Refusal> {
        match choice {
            SecretChoice::None | SecretChoice::ByDestination => Ok(None),
            SecretChoice::Named(name) => {
                match self.grants.secrets.iter().find(|p| &p.name == name) {
                    Some(policy) => Ok(Some(policy.clone())),
                    None => Err(Refusal::denied(format!(
                        "no secret named `{}` is granted to this plugin",
                        name.escape_debug()
                    ))),
                }
            }
        }
    }

    /// The secret a request gets: the one it named (already checked to be
    /// granted), or for a by-destination request the first granted secret
    /// bound to `method` on `target`.
    pub(super) fn chosen_secret(
        &self,
        choice: SecretChoice,
        named: Option<SecretPolicy>,
        method: &str,
        target: &Target,
    ) -> Option<SecretPolicy> {
        match choice {
            SecretChoice::ByDestination => self
                .grants
                .secrets
                .iter()
                .find(|p| p.allows(method, target))
                .cloned(),
            SecretChoice::Named(_) | SecretChoice::None => named,
        }
    }

    /// Checks that `policy` is bound to this request, fetches its value for
    /// this call and attaches it.
    ///
    /// # Errors
    ///
    /// A denial when the secret is not bound to `method` on `target`; a
    /// failure (not the plugin's, not a denial) when its value cannot be
    /// had or cannot go where it is injected.
    pub(super) async fn attach(
        &self,
        policy: &SecretPolicy,
        method: &str,
        target: &Target,
        deadline: Instant,
        headers: &mut Vec<(http::HeaderName, http::HeaderValue)>,
        path_and_query: &mut String,
    ) -> Result<(), Refusal> {
        let name = &policy.name;
        if !policy.allows(method, target) {
            if let Some(rule) = policy.refusing_spelling(target) {
                return Err(Refusal::denied(format!(
                    "secret `{name}`: path `{}` has `;`, `%25` or an encoded `.`, `/` or `\\`, which servers may read differently from its destination `{rule}`",
                    target.path
                )));
            }
            return Err(Refusal::denied(format!(
                "secret `{name}` is not bound to {method} {}{}",
                target.origin(),
                target.path
            )));
        }
        let value = self.fetch(policy, deadline).await?;
        // Known before anything is sent: an echo of a rotated value is
        // scrubbed like the value known at load.
        self.learn(name, &value);
        let injection = policy.inject.inject(&value).map_err(unavailable)?;
        put(name, injection, headers, path_and_query)
    }

    /// The value of `policy`'s secret for this call, asked of its source by
    /// `deadline`, and long enough to be scrubbed.
    async fn fetch(&self, policy: &SecretPolicy, deadline: Instant) -> Result<Secret, Refusal> {
        let name = &policy.name;
        let request = SecretRequest::for_call(
            name.clone(),
            self.grants.plugin.to_string(),
            self.call.tool.clone(),
            self.call.call_id,
            self.call.caller.clone(),
        );
        let value = match tokio::time::timeout_at(deadline, policy.source.fetch(&request)).await {
            Err(_) => {
                return Err(unavailable(format!(
                    "secret `{name}` is unavailable: its source did not answer in time"
                )));
            }
            Ok(Err(e)) => {
                // The source's own words may quote what it fetched.
                let why = format!("secret `{name}` is unavailable: {e}");
                return Err(unavailable(self.scrubber().scrub_str(&why).into_owned()));
            }
            Ok(Ok(value)) => value,
        };
        if value.len() < crate::secrets::MIN_SECRET_BYTES {
            return Err(unavailable(format!(
                "secret `{name}` is shorter than {} bytes, too short to scrub reliably",
                crate::secrets::MIN_SECRET_BYTES
            )));
        }
        Ok(value)
    }
}

/// Puts secret `name`'s `injection` where it goes: a header (marked
/// sensitive) or the query.
fn put(
    name: &str,
    injection: Injection,
    headers: &mut Vec<(http::HeaderName, http::HeaderValue)>,
    path_and_query: &mut String,
) -> Result<(), Refusal> {
    match injection {
        Injection::Header {
            name: header,
            value,
        } => {
            let lower = header.to_ascii_lowercase();
            let header = http::HeaderName::from_bytes(lower.as_bytes()).map_err(|_| {
                unavailable(format!(
                    "secret `{name}`: header name `{lower}` is not valid"
                ))
            })?;
            let mut value =
                http::HeaderValue::from_str(value.expose_for_injection()).map_err(|_| {
                    unavailable(format!("secret `{name}`: the value cannot go in a header"))
                })?;
            value.set_sensitive(true);
            headers.push((header, value));
        }
        injection @ Injection::Query { .. } => {
            let (path, query) = match path_and_query.split_once('?') {
                Some((path, query)) => (path.to_string(), query.to_string()),
                None => (path_and_query.clone(), String::new()),
            };
            if let Some(query) = injection.append_to_query(&query) {
                *path_and_query = format!("{path}?{}", query.expose_for_injection());
            }
        }
    }
    Ok(())
}

/// The secret could not be had (its source failed) or cannot be attached:
/// nothing was sent, and it is the source's failure, not the plugin's, so
/// not a denial.
fn unavailable(why: String) -> Refusal {
    Refusal::Failed(EgressError::Upstream(why))
}
