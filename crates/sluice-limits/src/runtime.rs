//! Limits set at run time through the admin API: they replace a key's, team's or user's
//! configured ones, and survive in the store.

use std::collections::HashMap;
use std::sync::Arc;

use sluice_config::LimitSpec;

/// Limits set at run time through the admin API; they replace a key's or team's own limits
/// from the config (a key's tier still applies).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RuntimeLimits {
    pub keys: HashMap<String, Vec<LimitSpecView>>,
    pub teams: HashMap<String, Vec<LimitSpecView>>,
    /// Each end user's limits, by key id (a key's `user_limits`).
    pub users: HashMap<String, Vec<LimitSpecView>>,
    #[serde(skip)]
    pub key_specs: HashMap<String, Arc<[LimitSpec]>>,
    #[serde(skip)]
    pub team_specs: HashMap<String, Arc<[LimitSpec]>>,
    #[serde(skip)]
    pub user_specs: HashMap<String, Arc<[LimitSpec]>>,
}

impl RuntimeLimits {
    /// Sets `scope` (`keys`, `teams`, or `users`: a key's end users) `name`'s limits.
    pub fn set(&mut self, scope: &str, name: &str, specs: Vec<LimitSpec>) {
        let view: Vec<LimitSpecView> = specs.iter().map(LimitSpecView::from).collect();
        match scope {
            "keys" => {
                self.keys.insert(name.to_owned(), view);
                self.key_specs.insert(name.to_owned(), Arc::from(specs));
            }
            "teams" => {
                self.teams.insert(name.to_owned(), view);
                self.team_specs.insert(name.to_owned(), Arc::from(specs));
            }
            "users" => {
                self.users.insert(name.to_owned(), view);
                self.user_specs.insert(name.to_owned(), Arc::from(specs));
            }
            _ => {}
        }
    }

    /// Removes them; `false` if there were none.
    pub fn clear(&mut self, scope: &str, name: &str) -> bool {
        match scope {
            "keys" => self.key_specs.remove(name).is_some() | self.keys.remove(name).is_some(),
            "teams" => self.team_specs.remove(name).is_some() | self.teams.remove(name).is_some(),
            "users" => self.user_specs.remove(name).is_some() | self.users.remove(name).is_some(),
            _ => false,
        }
    }
}

/// A limit as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LimitSpecView {
    pub name: String,
    pub amount: u64,
    pub burst: u64,
}

impl From<&LimitSpec> for LimitSpecView {
    fn from(s: &LimitSpec) -> Self {
        LimitSpecView {
            name: s.name(),
            amount: s.amount,
            burst: s.burst,
        }
    }
}
