//! Human durations for options such as `--expires 7d`: a whole number and one unit of
//! s, m, h, d or w.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub u64);

impl Span {
    pub fn secs(self) -> u64 {
        self.0
    }
}

impl std::str::FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Span, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits.parse().map_err(|_| format!("{s:?} is not a duration: write a number and a unit, e.g. 30m, 12h, 7d"))?;
        let scale = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(format!("{s:?}: the unit must be one of s, m, h, d, w (e.g. 7d)")),
        };
        match n.checked_mul(scale) {
            Some(0) => Err("a duration must be longer than zero".into()),
            Some(secs) if secs <= 10 * 365 * 86_400 => Ok(Span(secs)),
            _ => Err(format!("{s:?} is longer than ten years")),
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        for (unit, scale) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
            if s.is_multiple_of(scale) {
                return write!(f, "{}{unit}", s / scale);
            }
        }
        write!(f, "{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!("7d".parse::<Span>().unwrap().secs(), 604_800);
        assert_eq!("90s".parse::<Span>().unwrap().to_string(), "90s");
        assert_eq!("48h".parse::<Span>().unwrap().to_string(), "2d");
        for bad in ["", "7", "d", "7 days", "0d", "-1d", "99999w", "1.5d"] {
            assert!(bad.parse::<Span>().is_err(), "{bad:?} accepted");
        }
    }
}
