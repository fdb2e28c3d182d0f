//! When the key must be renewed (DESIGN §3, CNIL: at least every five
//! years): the due date counts from the newest generation's creation, and
//! the service warns from a configurable number of days before it.
//!
//! Dates are calendar dates in UTC; a period that lands on a 29 February
//! of a year without one falls back to the 28th.

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime};

/// Years between renewals by default.
pub const DEFAULT_PERIOD_YEARS: u32 = 5;

/// Days before the due date from which the service warns, by default.
pub const DEFAULT_WARNING_DAYS: u32 = 90;

/// Where the key stands against its renewal date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// More than the warning period left.
    Current,
    /// Within the warning period: renew soon.
    DueSoon,
    /// Past the due date: every response carries a warning header.
    Overdue,
}

/// The renewal schedule of a key chain, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// When the newest generation was created (RFC 3339 UTC).
    pub last_renewal: String,
    /// The date the next renewal is due (`YYYY-MM-DD`, UTC).
    pub due: String,
    /// Days from today to `due`; negative once overdue.
    pub days_left: i64,
    /// Current, due soon or overdue.
    pub standing: Standing,
}

/// `years` calendar years after `from` (29 February → 28 February).
pub fn add_years(from: Date, years: u32) -> Date {
    let year = from
        .year()
        .saturating_add(i32::try_from(years).unwrap_or(i32::MAX));
    from.replace_year(year)
        .or_else(|_| Date::from_calendar_date(year, Month::February, 28))
        .unwrap_or(Date::MAX)
}

impl Schedule {
    /// The schedule of a chain whose newest key was created at `last`,
    /// seen at `now`.
    pub fn of(last: OffsetDateTime, now: OffsetDateTime, years: u32, warning_days: u32) -> Self {
        let due = add_years(last.date(), years);
        let days_left = (due - now.date()).whole_days();
        let standing = if now.date() >= due {
            Standing::Overdue
        } else if days_left <= i64::from(warning_days) {
            Standing::DueSoon
        } else {
            Standing::Current
        };
        Self {
            last_renewal: crate::event::rfc3339_seconds(last),
            due: date_label(due),
            days_left,
            standing,
        }
    }
}

/// `YYYY-MM-DD`.
pub fn date_label(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn due_five_years_after_the_last_renewal_and_loud_from_90_days() {
        let last = datetime!(2024-03-10 09:00 UTC);
        let s = Schedule::of(last, datetime!(2024-03-10 10:00 UTC), 5, 90);
        assert_eq!(
            (s.due.as_str(), s.standing),
            ("2029-03-10", Standing::Current)
        );
        let s = Schedule::of(last, datetime!(2028-12-10 10:00 UTC), 5, 90);
        assert_eq!((s.days_left, s.standing), (90, Standing::DueSoon));
        let s = Schedule::of(last, datetime!(2029-03-10 00:00 UTC), 5, 90);
        assert_eq!((s.days_left, s.standing), (0, Standing::Overdue));
    }

    #[test]
    fn a_leap_day_falls_back_to_the_28th() {
        assert_eq!(
            date_label(add_years(time::macros::date!(2024 - 02 - 29), 5)),
            "2029-02-28"
        );
    }
}
