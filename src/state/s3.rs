//! The S3 backend (`[backend] s3 = { bucket, key, region }`): the state is one object, with
//! its history, lock and journal beside it, for teams and CI that share a stack's state.
//!
//! Objects (for `key = "webapp/dev.json"`):
//! - `webapp/dev.json`: the state, byte for byte what the local backend would write.
//! - `webapp/dev.json.lock`: the lock. Created with `If-None-Match: *`, so of two runs that
//!   race exactly one gets it (S3 conditional writes, no DynamoDB: Terraform's `use_lockfile`).
//!   It holds id, operation, caller ARN, OS user, host, pid and time; the guard deletes it
//!   when the run ends. A run killed with SIGKILL leaves it behind — unlike the local OS lock
//!   nothing releases it — which is what `force-unlock` is for.
//! - `webapp/dev.history.jsonl`: the history (see [`super::history`]), one object rewritten
//!   on each append with `If-Match` on the ETag read just before. One object, not one per
//!   record, so that it is the same file as the local one (`state pull` copies it byte for
//!   byte and `audit` verifies either the same way) and readable with one GET; a state write
//!   is rare enough that re-uploading the history each time costs nothing that matters.
//! - `webapp/dev.json.journal/00000001.json`, …: the write-ahead journal of a running apply,
//!   one object per line. Remote, not on the machine that runs the apply: in CI that machine
//!   is gone when a run is killed, and the next run (elsewhere) must still fold in what the
//!   killed one did. One object per line keeps an append one PUT whatever the journal's size;
//!   each PUT is atomic, so there is no torn line to cut.
//!
//! State writes use `If-Match` on the ETag read at load (`If-None-Match: *` when there was
//! no state), so a writer that lost a race fails with [`SaveError::Conflict`] and the object
//! keeps the winner's state. The history record is written first (as locally); if the state
//! write then loses, the record is taken back (conditionally on its own ETag), so the loser
//! leaves no trace in the chain.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use aws_sdk_s3::primitives::ByteStream;

use super::local::{LockGuard, block_on_here};
use super::{Backend, BackendRef, LockError, LockInfo, SaveError, State, Stored, Unlocked};
use super::{history, journal};

pub struct S3Backend {
    client: aws_sdk_s3::Client,
    pub bucket: String,
    pub key: String,
    pub region: Option<String>,
    /// The caller's ARN, written into the lock (set from STS by the CLI).
    pub caller_arn: Option<String>,
    /// How to name this stack in the force-unlock hint ("stacks/webapp.toml --env dev").
    pub stack_hint: String,
    /// The state object's ETag at the last load: `Some(None)` when there was none.
    loaded: Mutex<Option<Option<String>>>,
}

/// How a conditional PUT ended when it did not succeed.
enum PutError {
    /// 412 (the condition failed), 409 (a concurrent conditional write), or 404 (If-Match on
    /// an object that is gone).
    Lost,
    Other(anyhow::Error),
}

#[derive(Clone, Copy)]
enum Cond<'a> {
    None,
    /// `If-None-Match: *`: only if there is no object.
    Absent,
    /// `If-Match: etag`: only if the object is still this one.
    Is(&'a str),
}

impl<'a> Cond<'a> {
    fn from_etag(etag: Option<&'a str>) -> Self {
        etag.map_or(Cond::Absent, Cond::Is)
    }
}

impl S3Backend {
    /// `client` comes from [`crate::providers::Aws::s3`]; `region` overrides its region.
    pub fn new(client: aws_sdk_s3::Client, bucket: &str, key: &str, region: Option<&str>) -> Self {
        let client = match region {
            Some(r) => aws_sdk_s3::Client::from_conf(
                client
                    .config()
                    .to_builder()
                    .region(aws_config::Region::new(r.to_owned()))
                    .build(),
            ),
            None => client,
        };
        S3Backend {
            client,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            region: region.map(str::to_owned),
            caller_arn: None,
            stack_hint: "STACK --env ENV".into(),
            loaded: Mutex::new(None),
        }
    }

    fn history_key(&self) -> String {
        history::path_for(std::path::Path::new(&self.key))
            .to_string_lossy()
            .into_owned()
    }

    fn lock_key(&self) -> String {
        format!("{}.lock", self.key)
    }

    fn journal_prefix(&self) -> String {
        format!("{}.journal/", self.key)
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// A warning when the bucket keeps no versions: an overwritten or deleted state (or a
    /// forced push) could not be recovered. `None` when versioning is on, or unreadable.
    pub async fn versioning_warning(&self) -> Option<String> {
        match self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(v) if v.status() == Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled) => {
                None
            }
            Ok(_) => Some(format!(
                "bucket {} keeps no object versions: an overwritten state could not be recovered; enable versioning (aws s3api put-bucket-versioning --bucket {} --versioning-configuration Status=Enabled)",
                self.bucket, self.bucket
            )),
            Err(e) => {
                tracing::debug!(error = %aws_sdk_s3::error::DisplayErrorContext(&e), "cannot read bucket versioning");
                None
            }
        }
    }

    async fn get(&self, key: &str) -> anyhow::Result<Option<(Vec<u8>, String)>> {
        get(&self.client, &self.bucket, key).await
    }

    async fn put(&self, key: &str, body: Vec<u8>, cond: Cond<'_>) -> Result<String, PutError> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(if key.ends_with(".jsonl") {
                "application/x-ndjson"
            } else {
                "application/json"
            })
            .body(ByteStream::from(body));
        req = match cond {
            Cond::None => req,
            Cond::Absent => req.if_none_match("*"),
            Cond::Is(etag) => req.if_match(etag),
        };
        match req.send().await {
            Ok(out) => Ok(out.e_tag().unwrap_or_default().to_owned()),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                if matches!(status, Some(412 | 409))
                    || (status == Some(404) && matches!(cond, Cond::Is(_)))
                {
                    Err(PutError::Lost)
                } else {
                    Err(PutError::Other(anyhow!(
                        "cannot write {}: {}",
                        self.url(key),
                        aws_sdk_s3::error::DisplayErrorContext(&e)
                    )))
                }
            }
        }
    }

    async fn delete(&self, key: &str, etag: Option<&str>) -> anyhow::Result<()> {
        delete(&self.client, &self.bucket, key, etag).await
    }

    async fn journal_keys(&self) -> anyhow::Result<Vec<String>> {
        list_keys(&self.client, &self.bucket, &self.journal_prefix()).await
    }

    async fn read_journal(&self) -> anyhow::Result<Option<journal::Read>> {
        let mut lines = Vec::new();
        for k in self.journal_keys().await? {
            if let Some((body, _)) = self.get(&k).await? {
                lines.push(String::from_utf8_lossy(&body).trim_end().to_owned());
            }
        }
        Ok(journal::parse(&lines))
    }

    async fn remove_journal(&self) -> anyhow::Result<()> {
        remove_all(&self.client, &self.bucket, &self.journal_prefix()).await
    }

    async fn read_state(&self) -> anyhow::Result<Option<(State, String)>> {
        let Some((body, etag)) = self.get(&self.key).await? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&body);
        let state = State::from_json(&text).map_err(|e| {
            anyhow!(
                "state {} is unusable: {e}\nnothing was changed; restore an earlier version of the object (bucket versioning) or fix it by hand",
                self.describe()
            )
        })?;
        Ok(Some((state, etag)))
    }

    async fn read_history(&self) -> anyhow::Result<(String, Option<String>)> {
        Ok(match self.get(&self.history_key()).await? {
            Some((b, etag)) => (String::from_utf8_lossy(&b).into_owned(), Some(etag)),
            None => (String::new(), None),
        })
    }

    /// Writes the state object only if it is still `etag` (`None`: still absent). The
    /// primitive the state's conflict detection rests on, public for its test.
    pub async fn put_state_if(
        &self,
        bytes: Vec<u8>,
        etag: Option<&str>,
    ) -> Result<String, SaveError> {
        match self.put(&self.key, bytes, Cond::from_etag(etag)).await {
            Ok(e) => Ok(e),
            Err(PutError::Lost) => Err(self.conflict(None, None).await),
            Err(PutError::Other(e)) => Err(SaveError::Other(e)),
        }
    }

    /// The conflict error, with the serial the winner left when it can be read.
    async fn conflict(&self, expected: Option<u64>, found: Option<u64>) -> SaveError {
        let found = match found {
            Some(f) => Some(f),
            None => self
                .read_state()
                .await
                .ok()
                .flatten()
                .map(|(s, _)| s.serial),
        };
        SaveError::Conflict {
            state: self.describe(),
            expected,
            found,
        }
    }
}

/// Keys under `prefix`, sorted (the journal's lines, in order).
async fn list_keys(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            anyhow!(
                "cannot list s3://{bucket}/{prefix}: {}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            )
        })?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    keys.sort();
    Ok(keys)
}

async fn remove_all(client: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> anyhow::Result<()> {
    for k in list_keys(client, bucket, prefix).await? {
        delete(client, bucket, &k, None).await?;
    }
    Ok(())
}

async fn get(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> anyhow::Result<Option<(Vec<u8>, String)>> {
    match client.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => {
            let etag = out.e_tag().unwrap_or_default().to_owned();
            let body = out
                .body
                .collect()
                .await
                .with_context(|| format!("cannot read s3://{bucket}/{key}"))?;
            Ok(Some((body.into_bytes().to_vec(), etag)))
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
        Err(e) => Err(anyhow!(
            "cannot read s3://{bucket}/{key}: {}",
            aws_sdk_s3::error::DisplayErrorContext(&e)
        )),
    }
}

async fn delete(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    etag: Option<&str>,
) -> anyhow::Result<()> {
    let mut req = client.delete_object().bucket(bucket).key(key);
    if let Some(e) = etag {
        req = req.if_match(e);
    }
    req.send().await.map(|_| ()).map_err(|e| {
        anyhow!(
            "cannot delete s3://{bucket}/{key}: {}",
            aws_sdk_s3::error::DisplayErrorContext(&e)
        )
    })
}

/// Deletes the lock `key` if it is still the one with `id` (not one a force-unlock and a
/// later run put there since).
async fn release(client: aws_sdk_s3::Client, bucket: String, key: String, id: String) {
    let result = async {
        let Some((body, etag)) = get(&client, &bucket, &key).await? else {
            return Ok(());
        };
        match serde_json::from_slice::<LockInfo>(&body) {
            Ok(info) if info.id == id => delete(&client, &bucket, &key, Some(&etag)).await,
            _ => {
                tracing::warn!("the lock s3://{bucket}/{key} is no longer this run's: left as is");
                Ok(())
            }
        }
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %format!("{e:#}"), "could not release the state lock; remove it with force-unlock");
    }
}

/// The journal's lines, one object each: `<key>.journal/00000001.json`, …
struct S3Sink {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    seq: u64,
}

impl journal::Sink for S3Sink {
    fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        self.seq += 1;
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(format!("{}{:08}.json", self.prefix, self.seq))
            .content_type("application/json")
            .body(ByteStream::from(line.as_bytes().to_vec()));
        match block_on_here(async move { req.send().await }) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(std::io::Error::other(
                aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
            )),
            Err(_) => Err(std::io::Error::other(
                "the S3 journal needs the multi-threaded tokio runtime",
            )),
        }
    }

    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

#[async_trait::async_trait]
impl Backend for S3Backend {
    async fn load(&self) -> anyhow::Result<Option<State>> {
        let on_s3 = self.read_state().await?;
        *self.loaded.lock().expect("etag lock") = Some(on_s3.as_ref().map(|(_, e)| e.clone()));
        let on_s3 = on_s3.map(|(s, _)| s);
        let Some(j) = self.read_journal().await? else {
            return Ok(on_s3);
        };
        // As locally: a journal extends the state it began on; one whose base is gone was
        // folded already.
        let mut state = match on_s3 {
            Some(s) if s.lineage == j.lineage && s.serial == j.base_serial => s,
            None if j.base_serial == 0 => j.empty_state(),
            other => return Ok(other),
        };
        journal::replay(&mut state, &j.entries);
        tracing::info!(
            entries = j.entries.len(),
            "replayed the remote journal of an interrupted run"
        );
        Ok(Some(state))
    }

    async fn save(
        &self,
        state: &mut State,
        expected: Option<u64>,
        draft: &history::Draft,
    ) -> Result<u64, SaveError> {
        let current = self.read_state().await?;
        let etag = current.as_ref().map(|(_, e)| e.clone());
        let current = current.map(|(s, _)| s);
        let found = current.as_ref().map(|s| s.serial);
        let same_lineage = current.as_ref().is_none_or(|c| c.lineage == state.lineage);
        // The object must still be the one this run loaded, not only have the same serial.
        let loaded = self.loaded.lock().expect("etag lock").clone();
        let moved = loaded.is_some_and(|l| l != etag);
        if found != expected || !same_lineage || moved {
            return Err(SaveError::Conflict {
                state: self.describe(),
                expected,
                found,
            });
        }
        state.serial = expected.unwrap_or(0) + 1;
        state.tool_version = env!("CARGO_PKG_VERSION").to_owned();
        let (text, hetag) = self.read_history().await?;
        let line =
            history::prepare_after(&history::lines_of(&text), draft, current.as_ref(), state);
        // A torn tail cannot happen on S3 (a PUT is atomic); keep only whole lines anyway.
        let mut new_history: String = history::lines_of(&text)
            .iter()
            .map(|l| format!("{l}\n"))
            .collect();
        new_history.push_str(&line);
        new_history.push('\n');
        let hkey = self.history_key();
        let new_hetag = match self
            .put(
                &hkey,
                new_history.into_bytes(),
                Cond::from_etag(hetag.as_deref()),
            )
            .await
        {
            Ok(e) => e,
            Err(PutError::Lost) => return Err(self.conflict(expected, None).await),
            Err(PutError::Other(e)) => return Err(SaveError::Other(e)),
        };
        let body = state.to_json().into_bytes();
        let new_etag = match self
            .put(&self.key, body, Cond::from_etag(etag.as_deref()))
            .await
        {
            Ok(e) => e,
            Err(lost) => {
                // Take our record back, unless someone appended after it meanwhile.
                let undo = if hetag.is_some() {
                    self.put(&hkey, text.into_bytes(), Cond::Is(&new_hetag))
                        .await
                        .map(|_| ())
                        .map_err(|_| ())
                } else {
                    self.delete(&hkey, Some(&new_hetag)).await.map_err(|_| ())
                };
                if undo.is_err() {
                    tracing::warn!("could not take back the history record of a lost write");
                }
                return Err(match lost {
                    PutError::Lost => self.conflict(expected, None).await,
                    PutError::Other(e) => SaveError::Other(e),
                });
            }
        };
        *self.loaded.lock().expect("etag lock") = Some(Some(new_etag));
        if let Err(e) = self.remove_journal().await {
            tracing::warn!(error = %format!("{e:#}"), "cannot remove the folded journal");
        }
        Ok(state.serial)
    }

    async fn audit(&self) -> anyhow::Result<history::Report> {
        let state = self.read_state().await?.map(|(s, _)| s);
        let (text, _) = self.read_history().await?;
        Ok(history::verify_lines(
            &history::lines_of(&text),
            state.as_ref(),
        ))
    }

    async fn lock(&self, operation: &str, timeout: Duration) -> Result<LockGuard, LockError> {
        let key = self.lock_key();
        let mut info = LockInfo::new(operation);
        info.arn = self.caller_arn.clone();
        let body = serde_json::to_vec(&info).expect("lock info json");
        let start = Instant::now();
        loop {
            match self.put(&key, body.clone(), Cond::Absent).await {
                Ok(_) => break,
                Err(PutError::Other(e)) => {
                    return Err(LockError::Remote {
                        state: self.describe(),
                        message: format!("{e:#}"),
                    });
                }
                Err(PutError::Lost) if start.elapsed() >= timeout => {
                    let holder = self
                        .get(&key)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|(b, _)| serde_json::from_slice::<LockInfo>(&b).ok());
                    let id = holder
                        .as_ref()
                        .map_or("LOCK_ID".to_owned(), |h| h.id.clone());
                    return Err(LockError::Locked {
                        state: self.describe(),
                        holder,
                        help: format!(
                            "wait for that run to finish, or pass --lock-timeout 5m to wait for it; if it was killed, its lock stays in S3: remove it with `stackwright force-unlock {} {id}`",
                            self.stack_hint
                        ),
                    });
                }
                Err(PutError::Lost) => {
                    let left = timeout.saturating_sub(start.elapsed());
                    tokio::time::sleep(left.min(Duration::from_millis(500))).await;
                }
            }
        }
        let (client, bucket, id) = (self.client.clone(), self.bucket.clone(), info.id.clone());
        Ok(LockGuard::remote(Box::new(move || {
            Box::pin(release(client, bucket, key, id))
        })))
    }

    async fn force_unlock(&self, id: &str) -> anyhow::Result<Unlocked> {
        let key = self.lock_key();
        let Some((body, etag)) = self.get(&key).await? else {
            return Ok(Unlocked::NotLocked);
        };
        let info: LockInfo = serde_json::from_slice(&body)
            .with_context(|| format!("the lock {} is not a Stackwright lock", self.url(&key)))?;
        if info.id != id {
            anyhow::bail!(
                "refusing to unlock {}: its lock id is not {id}; it is held by {info}\n  = help: check that run is gone, then pass its id: stackwright force-unlock {} {}",
                self.describe(),
                self.stack_hint,
                info.id
            );
        }
        self.delete(&key, Some(&etag)).await?;
        Ok(Unlocked::Released(info))
    }

    fn open_journal(&self, base: &State) -> std::io::Result<journal::Journal> {
        // Leftovers of a journal already folded (a kill between the fold and the removal).
        let (client, bucket, prefix) = (
            self.client.clone(),
            self.bucket.clone(),
            self.journal_prefix(),
        );
        match block_on_here(async move { remove_all(&client, &bucket, &prefix).await }) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(std::io::Error::other(format!("{e:#}"))),
            Err(_) => {
                return Err(std::io::Error::other(
                    "the S3 journal needs the multi-threaded tokio runtime",
                ));
            }
        }
        journal::Journal::start(
            Box::new(S3Sink {
                client: self.client.clone(),
                bucket: self.bucket.clone(),
                prefix: self.journal_prefix(),
                seq: 0,
            }),
            base,
        )
    }

    async fn has_journal(&self) -> anyhow::Result<bool> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.journal_prefix())
            .max_keys(1)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot list the journal {}: {}",
                    self.journal_location(),
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            })?;
        Ok(!out.contents().is_empty())
    }

    fn journal_location(&self) -> String {
        self.url(&self.journal_prefix())
    }

    async fn read_stored(&self) -> anyhow::Result<Option<Stored>> {
        let Some((state, _)) = self.get(&self.key).await? else {
            return Ok(None);
        };
        let history = self
            .get(&self.history_key())
            .await?
            .map(|(b, _)| b)
            .unwrap_or_default();
        Ok(Some(Stored { state, history }))
    }

    async fn write_stored(&self, stored: &Stored) -> anyhow::Result<()> {
        let put = |key: String, body: Vec<u8>| async move {
            match self.put(&key, body, Cond::None).await {
                Ok(e) => Ok(e),
                Err(PutError::Lost) => Err(anyhow!("cannot write {}", self.url(&key))),
                Err(PutError::Other(e)) => Err(e),
            }
        };
        put(self.history_key(), stored.history.clone()).await?;
        let etag = put(self.key.clone(), stored.state.clone()).await?;
        *self.loaded.lock().expect("etag lock") = Some(Some(etag));
        Ok(())
    }

    fn describe(&self) -> String {
        self.url(&self.key)
    }

    fn descriptor(&self) -> BackendRef {
        BackendRef::S3 {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            region: self.region.clone(),
        }
    }
}
