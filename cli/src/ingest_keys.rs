//! `courier ingest keys create|revoke|list`: API keys in the key log of a storage, written
//! directly (no server needed). Running `courier ingest` nodes on that storage follow the log,
//! so a key created or revoked here holds on each of them within 5 s.
//!
//! Output is the admin API's JSON on stdout; `create` shows the key this once.

use std::sync::Arc;

use clap::{Args, Subcommand};
use courier::ingest::server::{KeyLog, created_key_json, key_list_json, revoked_key_json};

use crate::storage::{self, STORAGE_FORMS};

/// `courier ingest keys`.
#[derive(Args, Debug)]
pub(crate) struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
    /// The storage holding the key log (stream `ingest-admin/keys`): the one `courier ingest`
    /// serves from. memory | sqlite:PATH[?sync=normal] | log:DIR | redis://.. | postgres://..
    #[arg(long, global = true, env = "COURIER_INGEST_STORAGE", default_value = storage::INGEST_DEFAULT_STORAGE)]
    storage: String,
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Create a key for an app; prints `{id, app_id, name, key, message}`, the key only now.
    Create {
        /// The app the key sends for (`[A-Za-z0-9._~:@+=-]{1,128}`).
        #[arg(long)]
        app_id: String,
        /// A label, e.g. "Production iOS".
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Revoke a key by id; prints `{status: "revoked", id}`.
    Revoke {
        /// The key's id (from `create` or `list`).
        id: String,
    },
    /// List keys (never the keys themselves); prints `{keys: [...], count}`.
    List {
        /// Only this app's keys (default: every app's).
        #[arg(long)]
        app_id: Option<String>,
    },
}

pub(crate) async fn run(args: KeysArgs) -> Result<(), String> {
    if args.storage == "memory" {
        // A key made in this process's memory would exist nowhere once it prints.
        return Err(
            "--storage memory keeps nothing after this command; name the storage `courier ingest` \
             runs on (e.g. sqlite:./data/ingest.db)"
                .into(),
        );
    }
    let storage = storage::open(&args.storage)
        .await
        .map_err(|e| format!("{e}\n  (--storage takes {STORAGE_FORMS})"))?;
    let log = KeyLog::open(Arc::clone(&storage))
        .await
        .map_err(|e| format!("cannot read the key log: {e}"))?;
    let output = match args.command {
        KeysCommand::Create { app_id, name } => {
            let created = log
                .create_key(&app_id, &name)
                .await
                .map_err(|e| e.to_string())?;
            created_key_json(&created)
        }
        KeysCommand::Revoke { id } => {
            let revoked = log.revoke(&id).await.map_err(|e| e.to_string())?;
            revoked_key_json(&revoked)
        }
        KeysCommand::List { app_id } => {
            let keys = log
                .list(app_id.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            key_list_json(&keys)
        }
    };
    println!("{output}");
    Ok(())
}
