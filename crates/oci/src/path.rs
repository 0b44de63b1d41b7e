//! The `/v2/` path grammar. Repository names contain slashes, so the tail after `/v2/` is
//! parsed right to left by its fixed suffixes instead of by one route per depth.

use crate::name::validate_repository_name;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V2Route<'a> {
    Base,
    Catalog,
    Tags { name: &'a str },
    Manifest { name: &'a str, reference: &'a str },
    Blob { name: &'a str, digest: &'a str },
    UploadStart { name: &'a str },
    Upload { name: &'a str, id: &'a str },
    Referrers { name: &'a str, digest: &'a str },
}

impl<'a> V2Route<'a> {
    /// The repository the route names, if any.
    pub fn name(&self) -> Option<&'a str> {
        match *self {
            V2Route::Base | V2Route::Catalog => None,
            V2Route::Tags { name }
            | V2Route::Manifest { name, .. }
            | V2Route::Blob { name, .. }
            | V2Route::UploadStart { name }
            | V2Route::Upload { name, .. }
            | V2Route::Referrers { name, .. } => Some(name),
        }
    }

    /// The same route on another repository (the store's key for the named one).
    pub fn with_name<'b>(self, new: &'b str) -> V2Route<'b>
    where
        'a: 'b,
    {
        match self {
            V2Route::Base => V2Route::Base,
            V2Route::Catalog => V2Route::Catalog,
            V2Route::Tags { .. } => V2Route::Tags { name: new },
            V2Route::Manifest { reference, .. } => V2Route::Manifest { name: new, reference },
            V2Route::Blob { digest, .. } => V2Route::Blob { name: new, digest },
            V2Route::UploadStart { .. } => V2Route::UploadStart { name: new },
            V2Route::Upload { id, .. } => V2Route::Upload { name: new, id },
            V2Route::Referrers { digest, .. } => V2Route::Referrers { name: new, digest },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// The path has the shape of a route but the name breaks the grammar.
    NameInvalid(String),
    /// No route has this shape.
    NotFound,
}

/// Parses the part of the path after `/v2/`.
pub fn parse_v2_path(tail: &str) -> Result<V2Route<'_>, PathError> {
    if tail.is_empty() {
        return Ok(V2Route::Base);
    }
    if tail == "_catalog" {
        return Ok(V2Route::Catalog);
    }
    let route = if let Some(name) = tail.strip_suffix("/tags/list") {
        V2Route::Tags { name }
    } else if let Some(name) = tail.strip_suffix("/blobs/uploads/").or_else(|| tail.strip_suffix("/blobs/uploads")) {
        V2Route::UploadStart { name }
    } else {
        let (head, last) = tail.rsplit_once('/').ok_or(PathError::NotFound)?;
        let (name, kind) = head.rsplit_once('/').ok_or(PathError::NotFound)?;
        match kind {
            "manifests" if !last.is_empty() => V2Route::Manifest { name, reference: last },
            "referrers" if !last.is_empty() => V2Route::Referrers { name, digest: last },
            "blobs" if last.contains(':') => V2Route::Blob { name, digest: last },
            "uploads" if !last.is_empty() => match name.strip_suffix("/blobs") {
                Some(name) => V2Route::Upload { name, id: last },
                None => return Err(PathError::NotFound),
            },
            "blobs" if !last.is_empty() => V2Route::Blob { name, digest: last },
            _ => return Err(PathError::NotFound),
        }
    };
    let name = match &route {
        V2Route::Tags { name }
        | V2Route::Manifest { name, .. }
        | V2Route::Blob { name, .. }
        | V2Route::UploadStart { name }
        | V2Route::Upload { name, .. }
        | V2Route::Referrers { name, .. } => *name,
        V2Route::Base | V2Route::Catalog => unreachable!("returned above"),
    };
    validate_repository_name(name).map_err(PathError::NameInvalid)?;
    Ok(route)
}

#[cfg(test)]
mod tests {
    use super::*;
    use V2Route::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn routes() {
        assert_eq!(parse_v2_path(""), Ok(Base));
        assert_eq!(parse_v2_path("_catalog"), Ok(Catalog));
        assert_eq!(parse_v2_path("team/app/api/tags/list"), Ok(Tags { name: "team/app/api" }));
        assert_eq!(parse_v2_path("a/manifests/latest"), Ok(Manifest { name: "a", reference: "latest" }));
        assert_eq!(parse_v2_path(&format!("a/b/blobs/{D}")), Ok(Blob { name: "a/b", digest: D }));
        assert_eq!(parse_v2_path("a/b/blobs/uploads/"), Ok(UploadStart { name: "a/b" }));
        assert_eq!(parse_v2_path("a/b/blobs/uploads"), Ok(UploadStart { name: "a/b" }));
        assert_eq!(parse_v2_path("a/b/blobs/uploads/1234-ab"), Ok(Upload { name: "a/b", id: "1234-ab" }));
        assert_eq!(parse_v2_path(&format!("x/referrers/{D}")), Ok(Referrers { name: "x", digest: D }));
        // a repository whose name ends in "blobs" still parses
        assert_eq!(parse_v2_path(&format!("a/blobs/blobs/{D}")), Ok(Blob { name: "a/blobs", digest: D }));
        assert_eq!(parse_v2_path("a/blobs/manifests/v1"), Ok(Manifest { name: "a/blobs", reference: "v1" }));
    }

    #[test]
    fn rejects() {
        assert_eq!(parse_v2_path("nothing"), Err(PathError::NotFound));
        assert_eq!(parse_v2_path("a/manifests/"), Err(PathError::NotFound));
        assert_eq!(parse_v2_path("a/unknown/x"), Err(PathError::NotFound));
        assert!(matches!(parse_v2_path("A/manifests/x"), Err(PathError::NameInvalid(_))));
        assert!(matches!(parse_v2_path("/manifests/x"), Err(PathError::NameInvalid(_))));
        assert!(matches!(parse_v2_path("a//b/tags/list"), Err(PathError::NameInvalid(_))));
    }
}
