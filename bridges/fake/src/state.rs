//! The `state` contact: a way to drive the login's state store
//! ([`LoginStore`]) from an XMPP client, for tests and demos.
//!
//! Each message to `state` is one command; `state` answers with one line:
//!
//! | command | answer |
//! | --- | --- |
//! | `put KEY VALUE…` | `ok`, or `error: …` (the store's typed error) |
//! | `putn KEY N` | puts N bytes (`x` repeated): `ok` or `error: …` |
//! | `get KEY` | `KEY = VALUE`, or `KEY is not set` |
//! | `delete KEY` | `ok` |
//! | `file NAME TEXT…` | writes TEXT to NAME in the login's data directory: `wrote DIR/NAME` |

use estuary_bridge_api::LoginStore;

/// The contact's name.
pub(crate) const CONTACT: &str = "state";

/// Runs one command against `store`; the answer to show.
pub(crate) async fn run(store: &LoginStore, command: &str) -> String {
    let mut words = command.trim().splitn(3, ' ');
    let verb = words.next().unwrap_or_default();
    let key = words.next().unwrap_or_default();
    let rest = words.next().unwrap_or_default();
    let answer = match verb {
        "put" => store.put(key, rest.as_bytes()).await.map(|()| "ok".into()),
        "putn" => match rest.trim().parse::<usize>() {
            Ok(n) if n <= 16 * 1024 * 1024 => {
                store.put(key, &vec![b'x'; n]).await.map(|()| "ok".into())
            }
            _ => return "error: putn takes a size up to 16 MiB".into(),
        },
        "get" => store.get(key).await.map(|value| match value {
            Some(v) => format!("{key} = {}", String::from_utf8_lossy(&v)),
            None => format!("{key} is not set"),
        }),
        "delete" => store.delete(key).await.map(|()| "ok".into()),
        "file" => return write_file(store, key, rest),
        _ => return "error: say put, putn, get, delete or file".into(),
    };
    answer.unwrap_or_else(|e| format!("error: {e}"))
}

fn write_file(store: &LoginStore, name: &str, text: &str) -> String {
    if !crate::valid_name(name) {
        return "error: a file name is letters, digits, '-' and '_'".into();
    }
    let dir = match store.data_dir() {
        Ok(dir) => dir,
        Err(e) => return format!("error: {e}"),
    };
    let path = dir.join(name);
    match std::fs::write(&path, text) {
        Ok(()) => format!("wrote {}", path.display()),
        Err(e) => format!("error: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commands_drive_the_store() {
        let store = LoginStore::in_memory();
        assert_eq!(run(&store, "get k").await, "k is not set");
        assert_eq!(run(&store, "put k hello world").await, "ok");
        assert_eq!(run(&store, "get k").await, "k = hello world");
        assert_eq!(run(&store, "delete k").await, "ok");
        assert_eq!(run(&store, "get k").await, "k is not set");
        assert!(run(&store, "putn k 70000").await.starts_with("error: "));
        assert!(run(&store, "put  v").await.starts_with("error: "));
        assert!(run(&store, "file ../x y").await.starts_with("error: "));
        let wrote = run(&store, "file notes hi").await;
        let path = wrote.strip_prefix("wrote ").expect(&wrote);
        assert_eq!(std::fs::read_to_string(path).unwrap(), "hi");
        std::fs::remove_dir_all(store.data_dir().unwrap()).unwrap();
    }
}
