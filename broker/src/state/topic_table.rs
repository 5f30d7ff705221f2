//! The broker's topics by name, with an index by topic ID: Fetch v13+, DeleteTopics v6
//! and the KIP-848 assignments name topics by ID.

use std::collections::HashMap;
use std::sync::Arc;

use super::Topic;

/// Topics by name and by ID, kept in step: every change goes through here.
#[derive(Debug, Default)]
pub(crate) struct TopicTable {
    by_name: HashMap<String, Arc<Topic>>,
    by_id: HashMap<uuid::Uuid, Arc<Topic>>,
}

impl TopicTable {
    /// Adds or replaces the topic called `name`.
    pub(crate) fn insert(&mut self, name: String, topic: Arc<Topic>) {
        if let Some(old) = self.by_name.insert(name, Arc::clone(&topic)) {
            self.by_id.remove(&old.id);
        }
        self.by_id.insert(topic.id, topic);
    }

    /// Removes the topic called `name`.
    pub(crate) fn remove(&mut self, name: &str) -> Option<Arc<Topic>> {
        let topic = self.by_name.remove(name)?;
        self.by_id.remove(&topic.id);
        Some(topic)
    }

    /// The topic called `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Arc<Topic>> {
        self.by_name.get(name)
    }

    /// The topic whose ID is `id`.
    pub(crate) fn get_by_id(&self, id: &uuid::Uuid) -> Option<&Arc<Topic>> {
        self.by_id.get(id)
    }

    /// Whether a topic is called `name`.
    pub(crate) fn contains_key(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Every topic, in no order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Arc<Topic>> {
        self.by_name.values()
    }

    /// How many topics there are.
    pub(crate) fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Removes every topic.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Arc<Topic>> + '_ {
        self.by_id.clear();
        self.by_name.drain().map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> Arc<Topic> {
        Arc::new(Topic {
            name: name.to_string(),
            id: uuid::Uuid::new_v4(),
            overrides: Default::default(),
            partitions: Vec::new(),
        })
    }

    #[test]
    fn the_id_index_follows_every_change() {
        let mut table = TopicTable::default();
        let a = topic("a");
        table.insert("a".into(), Arc::clone(&a));
        assert_eq!(table.get_by_id(&a.id).map(|t| t.name.as_str()), Some("a"));
        // Re-created under the same name: the old ID is gone, the new one found.
        let again = topic("a");
        table.insert("a".into(), Arc::clone(&again));
        assert!(table.get_by_id(&a.id).is_none());
        assert!(table.get_by_id(&again.id).is_some());
        assert_eq!(table.len(), 1);
        table.remove("a");
        assert!(table.get_by_id(&again.id).is_none());
        assert!(!table.contains_key("a"));
    }
}
