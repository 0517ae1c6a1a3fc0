//! The reservation a request holds against its limits: an owned guard, settled once with the
//! real usage by finish — or, dropped unsettled (a walk cancelled before finish took it), as one
//! request that used nothing. Budget threshold crossings it causes go to the alert webhooks.

use std::sync::Arc;

use sluice_limits::{Need, RateInfo, Reservation};

/// A reservation against every limit that applies; settled once by finish. Dropped unsettled
/// (a walk cancelled before finish took it), it settles as one request that used nothing.
#[derive(Debug, Default)]
pub struct Admission {
    pub reservation: Option<Reservation>,
    pub info: RateInfo,
    /// What was reserved (zero when no limit applied).
    pub reserved: Need,
    /// Where budget threshold crossings go, with the thresholds and currency.
    pub alerts: Option<AlertRoute>,
}

#[derive(Debug, Clone)]
pub struct AlertRoute {
    pub sender: crate::alerts::AlertSender,
    pub config: sluice_config::BudgetAlerts,
    pub currency: Arc<str>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.settle(&Need {
            requests: 1,
            ..Need::default()
        });
    }
}

impl Admission {
    /// Settles the reservation with the real usage and sends any budget alerts it triggers.
    pub fn settle(&mut self, actual: &Need) {
        let Some(reservation) = self.reservation.take() else {
            return;
        };
        let thresholds = self.alerts.as_ref().map_or(&[][..], |a| a.config.thresholds.as_slice());
        let then = self.alerts.clone().map(|route| -> sluice_limits::OnCrossings {
            Box::new(move |crossings| {
                for crossing in crossings {
                    route.sender.send(crate::alerts::Alert {
                        what: crate::alerts::Payload::Budget {
                            crossing,
                            currency: route.currency.clone(),
                        },
                        url: route.config.url.clone(),
                        secret: route.config.secret.as_ref().map(|s| s.expose().to_owned()),
                    });
                }
            })
        });
        reservation.settle(actual, thresholds, then);
    }
}
