//! `GET /media/<token>/<name>`: a file the gateway keeps, with its media type, length and a
//! safe `Content-Disposition`. Anything else under `/media` (no token, a token of the wrong
//! form, an unknown or expired one, `..`) is 404: there is no listing and no path from
//! the request reaches the file system except a well-formed token.

use super::MediaStore;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use tracing::debug;

/// The routes of the served files, to merge into the HTTP server's router.
pub fn routes(store: Arc<MediaStore>) -> Router {
    Router::new()
        .route("/media/{token}/{name}", get(file))
        .with_state(store)
}

/// The answer to anything not served: the same for a guess, an expired file and a file
/// that never was.
fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({ "error": "no such file (files expire)" })),
    )
        .into_response()
}

async fn file(
    State(store): State<Arc<MediaStore>>,
    Path((token, _name)): Path<(String, String)>,
) -> Response {
    let Some((meta, path)) = store.lookup(&token).await else {
        debug!("media: 404 for a path that is not served");
        return not_found();
    };
    let Ok(file) = tokio::fs::File::open(&path).await else {
        return not_found();
    };
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let media_type = meta
        .media_type
        .as_deref()
        .filter(|t| is_media_type(t))
        .unwrap_or("application/octet-stream");
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    let value = |s: &str| {
        HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("application/octet-stream"))
    };
    headers.insert(header::CONTENT_TYPE, value(media_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
    if let Ok(v) = HeaderValue::from_str(&disposition(media_type, &meta.name)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    response
}

/// Whether `t` reads as `type/subtype` (token characters only): anything else is served as
/// `application/octet-stream`.
fn is_media_type(t: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    matches!(t.split_once('/'), Some((a, b)) if token(a) && token(b))
}

/// Pictures, sound and video show in the browser (`inline`); everything else, HTML and SVG
/// among them (script on the gateway's origin), downloads (`attachment`).
fn disposition(media_type: &str, name: &str) -> String {
    let inline = ["image/png", "image/jpeg", "image/gif", "image/webp"].contains(&media_type)
        || media_type.starts_with("audio/")
        || media_type.starts_with("video/");
    let kind = if inline { "inline" } else { "attachment" };
    let ascii: String = name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// A file name safe to keep and to show: no path separators, no control characters, no
/// leading dot, at most 120 characters, not empty.
pub fn safe_file_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .take(120)
        .collect();
    let clean = clean.trim().trim_start_matches('.').to_string();
    if clean.is_empty() {
        "file".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe() {
        assert_eq!(safe_file_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(safe_file_name("a\r\nb.txt"), "a__b.txt");
        assert_eq!(safe_file_name(".."), "file");
        assert_eq!(safe_file_name("Résumé.pdf"), "Résumé.pdf");
        assert_eq!(safe_file_name(&"x".repeat(500)).len(), 120);
    }

    #[test]
    fn the_disposition_quotes_nothing_dangerous() {
        assert_eq!(
            disposition("image/png", "cat \"1\".png"),
            "inline; filename=\"cat _1_.png\"; filename*=UTF-8''cat%20%221%22.png"
        );
        assert_eq!(
            disposition("text/html", "Résumé.html"),
            "attachment; filename=\"R_sum_.html\"; filename*=UTF-8''R%C3%A9sum%C3%A9.html"
        );
        assert!(disposition("image/svg+xml", "a.svg").starts_with("attachment;"));
    }

    #[test]
    fn only_well_formed_media_types_are_served_as_such() {
        assert!(is_media_type("image/jpeg"));
        assert!(is_media_type("application/vnd.oasis.opendocument.text"));
        assert!(!is_media_type("text/html\r\nSet-Cookie: a=b"));
        assert!(!is_media_type("text/html; charset=utf-8"));
        assert!(!is_media_type("nonsense"));
    }
}
