//! Byte sizes: parsing what users write (`1GiB`, `500M`, `5%`) and printing
//! sizes for people.

/// A free-space floor: an absolute size or a share of the filesystem.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Floor {
    Bytes(u64),
    Percent(f64),
    /// The smaller of the two, e.g. the default "1 GiB or 5%".
    Smaller(u64, f64),
}

impl Floor {
    /// The default floor: 1 GiB, or 5% of the filesystem when that is less.
    pub const DEFAULT: Floor = Floor::Smaller(1 << 30, 5.0);

    /// The floor in bytes on a filesystem of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        let pct = |p: f64| (total as f64 * p / 100.0) as u64;
        match self {
            Floor::Bytes(b) => b,
            Floor::Percent(p) => pct(p),
            Floor::Smaller(b, p) => b.min(pct(p)),
        }
    }

    /// Parses `2GiB`, `500M`, `0`, or `5%`.
    pub fn parse(s: &str) -> Result<Floor, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a percentage"))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(format!("{s:?} is not between 0% and 100%"));
            }
            return Ok(Floor::Percent(p));
        }
        parse_size(t).map(Floor::Bytes)
    }
}

/// Parses a size: a number with an optional unit (K, M, G, T; KiB… or KB…; B).
/// Units are binary (1K = 1024), as in rsync, restic and borg options.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (try 500M or 2GiB)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("{s:?} has an unknown unit (use K, M, G or T)")),
    };
    Ok((num * (1u64 << shift) as f64) as u64)
}

/// A size for people: `0 B`, `512 B`, `1.5 KiB`, `1.22 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    let digits = if v < 10.0 {
        2
    } else if v < 100.0 {
        1
    } else {
        0
    };
    format!("{v:.digits$} {}", UNITS[unit])
}

/// `45s`, `12m 5s`, `3h 20m`, `2d 4h`.
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes accept binary units in the spellings users type.
    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1.5 G"), Ok(3 << 29));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5X").unwrap_err().contains("unknown unit"));
    }

    /// The default floor is 1 GiB or 5%, whichever is smaller.
    #[test]
    fn floors() {
        assert_eq!(Floor::DEFAULT.bytes(100 << 30), 1 << 30);
        assert_eq!(Floor::DEFAULT.bytes(10 << 30), (10u64 << 30) / 20);
        assert_eq!(Floor::parse("5%").unwrap().bytes(1000), 50);
        assert_eq!(Floor::parse("2GiB").unwrap(), Floor::Bytes(2 << 30));
        assert!(Floor::parse("120%").is_err());
    }

    /// Human sizes keep three significant digits.
    #[test]
    fn human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(1_220_000_000), "1.14 GiB");
        assert_eq!(human_bytes(200 << 20), "200 MiB");
    }
}
