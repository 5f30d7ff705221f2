//! Creating topics: the one metadata path that CreateTopics and auto-creation share.
//!
//! Topics are created in batches. Each is checked on its own (name, partitions, configs,
//! the partition limit), then the batch's partitions are opened, its metadata files
//! written, and the log and metadata directories synced once for the whole batch, not
//! once per topic: a request for a hundred topics costs two directory syncs, not two
//! hundred. Only the admin lock is held while the disk works; the topics map that
//! produce and fetch read is write-locked once, to insert the finished batch.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::{valid_topic_name, Broker, CreateError, Topic};

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// Its name.
    pub name: String,
    /// Partitions; -1 for `num.partitions`.
    pub partitions: i32,
    /// Topic config overrides.
    pub overrides: BTreeMap<String, String>,
}

impl NewTopic {
    /// A topic with the broker's defaults (what auto-creation makes).
    pub fn with_defaults(name: &str) -> Self {
        Self {
            name: name.to_string(),
            partitions: -1,
            overrides: BTreeMap::new(),
        }
    }
}

/// A topic that passed its own checks, with its partition count resolved.
struct Checked {
    name: String,
    partitions: i32,
    overrides: BTreeMap<String, String>,
}

impl Broker {
    /// Creates a topic (or checks that it could be, with `validate_only`).
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, CreateError> {
        let topic = NewTopic {
            name: name.to_string(),
            partitions,
            overrides,
        };
        let mut outcome = self.create_topics(vec![topic], validate_only);
        outcome
            .pop()
            .unwrap_or_else(|| Err(CreateError::Io("no outcome".into())))
    }

    /// Creates `topics` as one batch (or checks that they could be, with
    /// `validate_only`): one outcome per topic, in order. A name given twice is created
    /// once; the second gets [`CreateError::Exists`].
    pub fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<Result<Arc<Topic>, CreateError>> {
        let checked: Vec<Result<Checked, CreateError>> = topics
            .into_iter()
            .map(|t| self.check_new_topic(t))
            .collect();
        let _admin = self.admin_lock();
        let mut count = self.partition_count();
        let mut taken: HashSet<String> = HashSet::new();
        // Admitted topics are opened below; the rest keep their error.
        let admitted: Vec<Result<Checked, CreateError>> = checked
            .into_iter()
            .map(|c| {
                let c = c?;
                if self.topics().contains_key(&c.name) || !taken.insert(c.name.clone()) {
                    return Err(CreateError::Exists);
                }
                let (limit, more) = (self.config.max_partitions, c.partitions as usize);
                if count.saturating_add(more) > limit {
                    return Err(CreateError::PartitionLimit {
                        limit,
                        current: count,
                    });
                }
                count += more;
                Ok(c)
            })
            .collect();
        if validate_only {
            return admitted
                .into_iter()
                .map(|c| {
                    c.map(|c| {
                        Arc::new(Topic {
                            name: c.name,
                            id: uuid::Uuid::new_v4(),
                            overrides: c.overrides,
                            partitions: Vec::new(),
                        })
                    })
                })
                .collect();
        }
        // Past half the descriptor and map budget, new partitions start with their files
        // closed: an idle partition then costs no descriptor and no index map.
        let start_closed = crate::fd_budget::start_closed(count, self.fd_limit);
        let opened: Vec<Result<Topic, CreateError>> = admitted
            .into_iter()
            .map(|c| self.open_new_topic(c?, start_closed))
            .collect();
        self.commit_batch(opened)
    }

    /// The checks that need no lock: name, partition count, configs.
    fn check_new_topic(&self, t: NewTopic) -> Result<Checked, CreateError> {
        if !valid_topic_name(&t.name) {
            return Err(CreateError::InvalidName(t.name));
        }
        let partitions = if t.partitions == -1 {
            self.config.num_partitions
        } else {
            t.partitions
        };
        if !(1..=100_000).contains(&partitions) {
            return Err(CreateError::InvalidPartitions);
        }
        if let Some((k, v)) = t
            .overrides
            .iter()
            .find(|(k, v)| !crate::config::is_topic_config(k) || v.contains(['\n', '\r']))
        {
            return Err(CreateError::InvalidConfig(format!(
                "unknown or malformed topic config {k}={v:?}"
            )));
        }
        self.config
            .check_new_settings(&self.dynamic_configs(), &t.overrides)
            .map_err(|e| CreateError::InvalidConfig(format!("{e:#}")))?;
        Ok(Checked {
            name: t.name,
            partitions,
            overrides: t.overrides,
        })
    }

    /// Opens a new topic's partitions and writes its metadata file (not yet synced).
    fn open_new_topic(&self, c: Checked, start_closed: bool) -> Result<Topic, CreateError> {
        let io = |e: anyhow::Error| CreateError::Io(format!("{e:#}"));
        // Directories left by an earlier topic of this name (a failed delete or create)
        // must not come back as this topic's data.
        for index in 0..c.partitions {
            let dir = self.partition_dir(&c.name, index);
            if dir.exists() {
                tracing::warn!(dir = %dir.display(), "removing stale partition directory");
                self.flusher
                    .io()
                    .remove_dir_all(&dir)
                    .map_err(|e| CreateError::Io(e.to_string()))?;
            }
        }
        let id = uuid::Uuid::new_v4();
        let topic = self
            .open_topic(&c.name, id, c.partitions, c.overrides, start_closed)
            .map_err(io)?;
        self.replace_topic_meta(&c.name, id, c.partitions as usize, &topic.overrides)
            .map_err(io)?;
        Ok(topic)
    }

    /// Makes a batch's new partition directories and metadata files durable with one
    /// sync of each directory, then publishes the batch in one write of the topics map.
    /// A failed sync fails every topic of the batch, which is then not served: its files
    /// are in place and a restart may find it, as Kafka's unacknowledged creations may.
    fn commit_batch(
        &self,
        opened: Vec<Result<Topic, CreateError>>,
    ) -> Vec<Result<Arc<Topic>, CreateError>> {
        if !opened.iter().any(Result::is_ok) {
            return opened.into_iter().map(|t| t.map(Arc::new)).collect();
        }
        let synced = self
            .flusher
            .io()
            .sync_dir_at(&self.config.log_dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| self.sync_topic_meta());
        if let Err(e) = synced {
            tracing::error!(error = %format!("{e:#}"), "syncing new topics failed");
            let why = format!("topic created, but it may not survive a crash: {e:#}");
            return opened
                .into_iter()
                .map(|t| t.and(Err(CreateError::Io(why.clone()))))
                .collect();
        }
        let outcomes: Vec<Result<Arc<Topic>, CreateError>> =
            opened.into_iter().map(|t| t.map(Arc::new)).collect();
        let mut topics = self.topics_mut();
        for t in outcomes.iter().flatten() {
            topics.insert(t.name.clone(), Arc::clone(t));
        }
        drop(topics);
        let created: Vec<&str> = outcomes.iter().flatten().map(|t| t.name.as_str()).collect();
        if created.len() == 1 {
            tracing::info!(topic = created[0], "created topic");
        } else {
            tracing::info!(count = created.len(), first = created[0], "created topics");
        }
        outcomes
    }
}
