//! Protocol timing and sizes, with Phoenix.Tracker's defaults, validated at
//! construction.

use std::fmt;

/// How a node paces heartbeats, detects failures and keeps delta history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// How often a heartbeat may be broadcast. Phoenix: 1,500 ms.
    pub broadcast_period_ms: u64,
    /// Quiet periods (no local change) after which an empty heartbeat is sent
    /// anyway, so peers know the node is alive. Phoenix: 10.
    pub max_silent_periods: u32,
    /// A peer unheard for this long is marked down (its presences hidden).
    /// Phoenix: 30 s. Must be at least twice the broadcast period.
    pub down_period_ms: u64,
    /// A peer unheard for this long is permdowned (its presences discarded).
    /// Phoenix: 20 min. Must exceed `down_period_ms`.
    pub permdown_period_ms: u64,
    /// Every this many broadcast periods, peers' clocks are compared with
    /// ours and peers that are ahead are asked for a transfer. Phoenix: 2.
    pub clock_sample_periods: u32,
    /// Maximum sizes (joins plus leaves) of the delta generations kept to
    /// answer transfer requests cheaply, strictly increasing. Phoenix:
    /// 100, 1,000, 10,000.
    pub max_delta_sizes: Vec<usize>,
    /// How long a transfer request stays outstanding before it may be sent
    /// again to the same peer.
    pub transfer_timeout_ms: u64,
    /// How long a departed base's retirement watermark is kept before it may
    /// be forgotten (once no peer names the base either). Must exceed the
    /// permdown period. This is also the stated bound of the world the node
    /// assumes: no message arrives more than half of it after it was sent,
    /// and no clock jumps forward by half of it or more (see
    /// [`crate::Node`]'s forgetting). Not a Phoenix setting: one hour.
    pub retirement_memory_ms: u64,
}

impl Default for Config {
    /// Phoenix.Tracker's defaults; the transfer timeout is two broadcast
    /// periods.
    fn default() -> Self {
        Self {
            broadcast_period_ms: 1_500,
            max_silent_periods: 10,
            down_period_ms: 30_000,
            permdown_period_ms: 1_200_000,
            clock_sample_periods: 2,
            max_delta_sizes: vec![100, 1_000, 10_000],
            transfer_timeout_ms: 3_000,
            retirement_memory_ms: 3_600_000,
        }
    }
}

/// Why a configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A period or count that must be positive is zero.
    Zero {
        /// The field.
        field: &'static str,
    },
    /// `down_period_ms` is shorter than two broadcast periods: peers would be
    /// marked down between two heartbeats.
    DownTooShort {
        /// The configured down period.
        down_period_ms: u64,
        /// The least allowed.
        minimum_ms: u64,
    },
    /// `permdown_period_ms` does not exceed `down_period_ms`.
    PermdownNotAfterDown,
    /// `retirement_memory_ms` does not exceed `permdown_period_ms`: a
    /// watermark could be forgotten before every peer permdowned its base.
    MemoryNotAfterPermdown,
    /// An empty heartbeat would come later than `down_period_ms`, so a quiet
    /// but healthy peer would be marked down.
    SilenceLongerThanDown,
    /// `max_delta_sizes` is empty or not strictly increasing.
    DeltaSizes,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Zero { field } => write!(f, "{field} must be positive"),
            Self::DownTooShort {
                down_period_ms,
                minimum_ms,
            } => write!(
                f,
                "down_period_ms is {down_period_ms}; it must be at least twice the broadcast period ({minimum_ms})"
            ),
            Self::PermdownNotAfterDown => write!(f, "permdown_period_ms must exceed down_period_ms"),
            Self::MemoryNotAfterPermdown => {
                write!(f, "retirement_memory_ms must exceed permdown_period_ms")
            }
            Self::SilenceLongerThanDown => write!(
                f,
                "max_silent_periods x broadcast_period_ms must be shorter than down_period_ms"
            ),
            Self::DeltaSizes => write!(f, "max_delta_sizes must be non-empty and strictly increasing"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Checks the configuration; every node validates it at construction.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("broadcast_period_ms", self.broadcast_period_ms),
            ("max_silent_periods", u64::from(self.max_silent_periods)),
            ("clock_sample_periods", u64::from(self.clock_sample_periods)),
            ("transfer_timeout_ms", self.transfer_timeout_ms),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Zero { field });
        }
        let minimum_ms = self.broadcast_period_ms.saturating_mul(2);
        if self.down_period_ms < minimum_ms {
            return Err(ConfigError::DownTooShort {
                down_period_ms: self.down_period_ms,
                minimum_ms,
            });
        }
        if self.permdown_period_ms <= self.down_period_ms {
            return Err(ConfigError::PermdownNotAfterDown);
        }
        if self.retirement_memory_ms <= self.permdown_period_ms {
            return Err(ConfigError::MemoryNotAfterPermdown);
        }
        let silence_ms = self
            .broadcast_period_ms
            .saturating_mul(u64::from(self.max_silent_periods));
        if silence_ms >= self.down_period_ms {
            return Err(ConfigError::SilenceLongerThanDown);
        }
        let increasing = self.max_delta_sizes.windows(2).all(|pair| pair[0] < pair[1]);
        if self.max_delta_sizes.is_empty() || self.max_delta_sizes[0] == 0 || !increasing {
            return Err(ConfigError::DeltaSizes);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phoenix_defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn bad_configurations_say_why() {
        let base = Config::default();
        let short_down = Config {
            down_period_ms: 2_000,
            ..base.clone()
        };
        assert_eq!(
            short_down.validate(),
            Err(ConfigError::DownTooShort {
                down_period_ms: 2_000,
                minimum_ms: 3_000
            })
        );
        let permdown = Config {
            permdown_period_ms: 30_000,
            ..base.clone()
        };
        assert_eq!(permdown.validate(), Err(ConfigError::PermdownNotAfterDown));
        let memory = Config {
            retirement_memory_ms: base.permdown_period_ms,
            ..base.clone()
        };
        assert_eq!(memory.validate(), Err(ConfigError::MemoryNotAfterPermdown));
        let zero = Config {
            broadcast_period_ms: 0,
            ..base.clone()
        };
        assert_eq!(
            zero.validate(),
            Err(ConfigError::Zero {
                field: "broadcast_period_ms"
            })
        );
        let silent = Config {
            max_silent_periods: 20,
            ..base.clone()
        };
        assert_eq!(silent.validate(), Err(ConfigError::SilenceLongerThanDown));
        for max_delta_sizes in [vec![100, 100], vec![], vec![0], vec![0, 10]] {
            let sizes = Config {
                max_delta_sizes: max_delta_sizes.clone(),
                ..base.clone()
            };
            assert_eq!(
                sizes.validate(),
                Err(ConfigError::DeltaSizes),
                "{max_delta_sizes:?}"
            );
        }
    }
}
