//! Route keys (`GET /pets/{id}`, `ANY /files/{path+}`, `$default`) and the route table.
//!
//! Matching follows Amazon API Gateway: the most specific path wins (a literal segment
//! beats `{param}`, which beats a greedy `{name+}`), then an exact method beats `ANY`, and
//! `$default` takes what nothing else matched. Paths are matched as sent (still
//! percent-encoded), and captured parameters are returned undecoded.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;

/// The methods a route key may name.
const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY",
];

/// A parsed, valid route key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKey {
    /// `$default`: the catch-all route.
    Default,
    /// `METHOD /path`.
    Route {
        /// Upper-case method, or `None` for `ANY`.
        method: Option<String>,
        /// The path's segments.
        segments: Vec<Segment>,
    },
}

/// One segment of a route path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A literal segment.
    Literal(String),
    /// `{name}`: one segment.
    Param(String),
    /// `{name+}`: the rest of the path (last segment only).
    Greedy(String),
}

impl Segment {
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(_) => 2,
            Segment::Param(_) => 1,
            Segment::Greedy(_) => 0,
        }
    }
}

/// Why a route key is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteKeyError {
    /// Not `$default` and not `METHOD /path`.
    #[error("expected `METHOD /path` or `$default`")]
    Shape,
    /// The method is not one AWS allows.
    #[error(
        "unknown method `{0}` (expected one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, ANY)"
    )]
    Method(String),
    /// The path does not start with `/`.
    #[error("path must start with `/`")]
    Slash,
    /// An empty segment such as `//`.
    #[error("empty path segment")]
    EmptySegment,
    /// A malformed `{...}` segment.
    #[error("invalid path parameter `{0}` (expected `{{name}}` or `{{name+}}` as a whole segment)")]
    Param(String),
    /// `{name+}` that is not the last segment.
    #[error("greedy parameter `{{{0}+}}` must be the last segment")]
    GreedyNotLast(String),
    /// The same parameter name twice.
    #[error("parameter `{0}` appears twice")]
    DuplicateParam(String),
}

impl std::str::FromStr for RouteKey {
    type Err = RouteKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "$default" {
            return Ok(RouteKey::Default);
        }
        let (method, path) = s.split_once(' ').ok_or(RouteKeyError::Shape)?;
        if !METHODS.contains(&method) {
            return Err(RouteKeyError::Method(method.to_owned()));
        }
        let path = path.strip_prefix('/').ok_or(RouteKeyError::Slash)?;
        let mut segments = Vec::new();
        if !path.is_empty() {
            let parts: Vec<&str> = path.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                let segment = parse_segment(part)?;
                if let Segment::Greedy(name) = &segment
                    && i + 1 != parts.len()
                {
                    return Err(RouteKeyError::GreedyNotLast(name.clone()));
                }
                if let Segment::Param(name) | Segment::Greedy(name) = &segment
                    && segments
                        .iter()
                        .any(|s| matches!(s, Segment::Param(n) | Segment::Greedy(n) if n == name))
                {
                    return Err(RouteKeyError::DuplicateParam(name.clone()));
                }
                segments.push(segment);
            }
        }
        Ok(RouteKey::Route {
            method: (method != "ANY").then(|| method.to_owned()),
            segments,
        })
    }
}

fn parse_segment(part: &str) -> Result<Segment, RouteKeyError> {
    if part.is_empty() {
        return Err(RouteKeyError::EmptySegment);
    }
    if !part.contains(['{', '}']) {
        return Ok(Segment::Literal(part.to_owned()));
    }
    let inner = part
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .ok_or_else(|| RouteKeyError::Param(part.to_owned()))?;
    let (name, greedy) = match inner.strip_suffix('+') {
        Some(name) => (name, true),
        None => (inner, false),
    };
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !valid {
        return Err(RouteKeyError::Param(part.to_owned()));
    }
    Ok(if greedy {
        Segment::Greedy(name.to_owned())
    } else {
        Segment::Param(name.to_owned())
    })
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteKey::Default => f.write_str("$default"),
            RouteKey::Route { method, segments } => {
                f.write_str(method.as_deref().unwrap_or("ANY"))?;
                f.write_str(" ")?;
                if segments.is_empty() {
                    return f.write_str("/");
                }
                for s in segments {
                    match s {
                        Segment::Literal(l) => write!(f, "/{l}")?,
                        Segment::Param(p) => write!(f, "/{{{p}}}")?,
                        Segment::Greedy(p) => write!(f, "/{{{p}+}}")?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// The pattern matchit understands for a route path.
fn matchit_pattern(segments: &[Segment]) -> String {
    if segments.is_empty() {
        return "/".to_owned();
    }
    let mut out = String::new();
    for s in segments {
        out.push('/');
        match s {
            Segment::Literal(l) => out.push_str(l),
            Segment::Param(p) => {
                out.push('{');
                out.push_str(p);
                out.push('}');
            }
            Segment::Greedy(p) => {
                out.push_str("{*");
                out.push_str(p);
                out.push('}');
            }
        }
    }
    out
}

/// Two route keys that cannot live in one table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route `{key}` conflicts with route `{with}`")]
pub struct RouteConflict {
    /// The route being added.
    pub key: String,
    /// The route already in the table.
    pub with: String,
}

/// A match: the route's index and its captured path parameters.
#[derive(Debug, PartialEq, Eq)]
pub struct RouteMatch {
    /// Index of the route, as given to [`RouteTable::new`].
    pub route: usize,
    /// Captured `{name}` / `{name+}` values, undecoded.
    pub params: Vec<(String, String)>,
}

#[derive(Default)]
struct PathTable {
    router: matchit::Router<usize>,
    /// matchit pattern → the route key as written, to name conflicts.
    keys: HashMap<String, String>,
}

impl PathTable {
    fn insert(
        &mut self,
        pattern: String,
        key: &RouteKey,
        route: usize,
    ) -> Result<(), RouteConflict> {
        if let Some(existing) = self.keys.get(&pattern) {
            return Err(RouteConflict {
                key: key.to_string(),
                with: existing.clone(),
            });
        }
        self.router.insert(pattern.clone(), route).map_err(|e| {
            let with = match &e {
                matchit::InsertError::Conflict { with } => {
                    self.keys.get(with).cloned().unwrap_or_else(|| with.clone())
                }
                other => other.to_string(),
            };
            RouteConflict {
                key: key.to_string(),
                with,
            }
        })?;
        self.keys.insert(pattern, key.to_string());
        Ok(())
    }
}

/// The compiled route table of one API.
#[derive(Default)]
pub struct RouteTable {
    by_method: HashMap<String, PathTable>,
    any: PathTable,
    default: Option<usize>,
    /// Per route: segment ranks, to compare a method match with an `ANY` match.
    ranks: Vec<Vec<u8>>,
}

impl RouteTable {
    /// Builds the table; route `i` of the iterator is reported as index `i`.
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a RouteKey>) -> Result<Self, RouteConflict> {
        let mut table = RouteTable::default();
        for (i, key) in keys.into_iter().enumerate() {
            match key {
                RouteKey::Default => {
                    if table.default.is_some() {
                        return Err(RouteConflict {
                            key: "$default".into(),
                            with: "$default".into(),
                        });
                    }
                    table.default = Some(i);
                    table.ranks.push(Vec::new());
                }
                RouteKey::Route { method, segments } => {
                    let paths = match method {
                        Some(m) => table.by_method.entry(m.clone()).or_default(),
                        None => &mut table.any,
                    };
                    paths.insert(matchit_pattern(segments), key, i)?;
                    table
                        .ranks
                        .push(segments.iter().map(Segment::rank).collect());
                }
            }
        }
        Ok(table)
    }

    /// Finds the route for a request, or `None` (404).
    pub fn lookup(&self, method: &str, path: &str) -> Option<RouteMatch> {
        let exact = self
            .by_method
            .get(method)
            .and_then(|t| t.router.at(path).ok());
        let any = self.any.router.at(path).ok();
        let best = match (exact, any) {
            (Some(e), Some(a)) => {
                // A more specific path wins; on a tie the exact method does.
                if self.ranks[*a.value].cmp(&self.ranks[*e.value]) == Ordering::Greater {
                    a
                } else {
                    e
                }
            }
            (Some(m), None) | (None, Some(m)) => m,
            (None, None) => {
                return self.default.map(|route| RouteMatch {
                    route,
                    params: Vec::new(),
                });
            }
        };
        Some(RouteMatch {
            route: *best.value,
            params: best
                .params
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        })
    }
}

/// Whether a path has a `.` or `..` segment, written plainly or percent-encoded
/// (`%2e`). Such paths are refused rather than normalised: an upstream that resolves
/// them itself could otherwise be reached outside the route's prefix.
pub fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|seg| {
        // One or two dots, each `.` or `%2e`/`%2E`, and nothing else.
        let mut rest = seg.as_bytes();
        let mut dots = 0;
        while !rest.is_empty() && dots <= 2 {
            rest = match rest {
                [b'.', tail @ ..] => tail,
                [b'%', b'2', b'e' | b'E', tail @ ..] => tail,
                _ => return false,
            };
            dots += 1;
        }
        rest.is_empty() && (dots == 1 || dots == 2)
    })
}

#[cfg(test)]
mod tests;
