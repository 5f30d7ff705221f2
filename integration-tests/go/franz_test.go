// franz-go (github.com/twmb/franz-go), a fifth independent implementation of the Kafka
// protocol and the most complete third-party one, against a running fjord:
// integration-tests/tests/franz_go.rs starts the broker and runs `go test` here with
// FJORD_BOOTSTRAP=HOST:PORT. Each check asserts what Apache Kafka's broker answers.
package franzgo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func bootstrap(t *testing.T) string {
	b := os.Getenv("FJORD_BOOTSTRAP")
	if b == "" {
		t.Fatal("run with FJORD_BOOTSTRAP=HOST:PORT")
	}
	return b
}

func client(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(bootstrap(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func name(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
}

func createTopic(t *testing.T, adm *kadm.Client, topic string, partitions int32, configs map[string]*string) {
	resp, err := adm.CreateTopics(ctx(t), partitions, 1, configs, topic)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp[topic].Err; err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
}

// Records with keys and headers, every codec, produced idempotently (franz-go's default)
// to three partitions and consumed back in a classic group that commits.
func TestProduceEveryCodecAndConsumeInAGroup(t *testing.T) {
	adm := kadm.NewClient(client(t))
	codecs := map[string]kgo.CompressionCodec{
		"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
	}
	for codecName, codec := range codecs {
		topic := name("franz-" + codecName)
		createTopic(t, adm, topic, 3, nil)
		producer := client(t, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(codec))
		const n = 300
		var recs []*kgo.Record
		for i := 0; i < n; i++ {
			recs = append(recs, &kgo.Record{
				Key:     []byte("k" + strconv.Itoa(i)),
				Value:   []byte(fmt.Sprintf("value-%d-%s", i, codecName)),
				Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v" + strconv.Itoa(i))}},
			})
		}
		if err := producer.ProduceSync(ctx(t), recs...).FirstErr(); err != nil {
			t.Fatalf("%s: produce: %v", codecName, err)
		}
		group := "g-" + topic
		consumer := client(t, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
		seen := map[string]*kgo.Record{}
		lastOffset := map[int32]int64{0: -1, 1: -1, 2: -1}
		c := ctx(t)
		for len(seen) < n {
			fetches := consumer.PollFetches(c)
			if c.Err() != nil {
				t.Fatalf("%s: only %d of %d records", codecName, len(seen), n)
			}
			if errs := fetches.Errors(); len(errs) > 0 {
				t.Fatalf("%s: fetch: %v", codecName, errs)
			}
			fetches.EachRecord(func(r *kgo.Record) {
				if r.Offset <= lastOffset[r.Partition] {
					t.Errorf("%s: partition %d offset %d after %d", codecName, r.Partition, r.Offset, lastOffset[r.Partition])
				}
				lastOffset[r.Partition] = r.Offset
				seen[string(r.Key)] = r
			})
		}
		for i := 0; i < n; i++ {
			r := seen["k"+strconv.Itoa(i)]
			if r == nil || string(r.Value) != fmt.Sprintf("value-%d-%s", i, codecName) ||
				len(r.Headers) != 1 || string(r.Headers[0].Value) != "v"+strconv.Itoa(i) {
				t.Fatalf("%s: record %d came back as %+v", codecName, i, r)
			}
		}
		if err := consumer.CommitUncommittedOffsets(ctx(t)); err != nil {
			t.Fatalf("%s: commit: %v", codecName, err)
		}
		offsets, err := adm.FetchOffsets(ctx(t), group)
		if err != nil {
			t.Fatal(err)
		}
		var committed int64
		for p := int32(0); p < 3; p++ {
			o, ok := offsets.Lookup(topic, p)
			if !ok || o.Err != nil {
				t.Fatalf("%s: no commit for partition %d: %+v", codecName, p, o)
			}
			committed += o.At
		}
		if committed != n {
			t.Fatalf("%s: commits add up to %d, want %d", codecName, committed, n)
		}
	}
}

// Topics, partitions, configs, offsets and groups through kadm.
func TestAdminBasics(t *testing.T) {
	cl := client(t)
	adm := kadm.NewClient(cl)
	topic := name("franz-admin")
	retention := "3600000"
	createTopic(t, adm, topic, 2, map[string]*string{"retention.ms": &retention})

	// A second creation: TOPIC_ALREADY_EXISTS.
	again, err := adm.CreateTopics(ctx(t), 2, 1, nil, topic)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(again[topic].Err, kerr.TopicAlreadyExists) {
		t.Fatalf("second creation: %v, want TOPIC_ALREADY_EXISTS", again[topic].Err)
	}
	// Replication factor 3 on one broker: INVALID_REPLICATION_FACTOR.
	bad, err := adm.CreateTopics(ctx(t), 1, 3, nil, topic+"-rf3")
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(bad[topic+"-rf3"].Err, kerr.InvalidReplicationFactor) {
		t.Fatalf("rf 3: %v, want INVALID_REPLICATION_FACTOR", bad[topic+"-rf3"].Err)
	}

	details, err := adm.ListTopics(ctx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	if d := details[topic]; d.Err != nil || len(d.Partitions) != 2 || d.ID == (kadm.TopicID{}) {
		t.Fatalf("described %+v", d)
	}

	configs, err := adm.DescribeTopicConfigs(ctx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := configs.On(topic, nil); err != nil || value(v.Configs, "retention.ms") != retention {
		t.Fatalf("retention.ms: %v %v", value(v.Configs, "retention.ms"), err)
	}
	newRetention := "7200000"
	altered, err := adm.AlterTopicConfigs(ctx(t), []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: &newRetention}}, topic)
	if err != nil || altered[0].Err != nil {
		t.Fatalf("alter: %v %+v", err, altered)
	}
	configs, _ = adm.DescribeTopicConfigs(ctx(t), topic)
	if v, _ := configs.On(topic, nil); value(v.Configs, "retention.ms") != newRetention {
		t.Fatalf("after alter: retention.ms %q", value(v.Configs, "retention.ms"))
	}

	if resp, err := adm.CreatePartitions(ctx(t), 1, topic); err != nil || resp[topic].Err != nil {
		t.Fatalf("add a partition: %v %+v", err, resp)
	}

	producer := client(t, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for p := int32(0); p < 3; p++ {
		for i := 0; i < int(p)+1; i++ {
			if err := producer.ProduceSync(ctx(t), &kgo.Record{Partition: p, Value: []byte("x")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	ends, err := adm.ListEndOffsets(ctx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 3; p++ {
		if o, ok := ends.Lookup(topic, p); !ok || o.Err != nil || o.Offset != int64(p)+1 {
			t.Fatalf("end offset of %d: %+v", p, o)
		}
	}
	starts, err := adm.ListStartOffsets(ctx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := starts.Lookup(topic, 2); o.Offset != 0 {
		t.Fatalf("start offset %+v", o)
	}

	group := "g-" + topic
	commits := kadm.Offsets{}
	commits.Add(kadm.Offset{Topic: topic, Partition: 2, At: 2, LeaderEpoch: -1})
	if resp, err := adm.CommitOffsets(ctx(t), group, commits); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", err, resp.Error())
	}
	fetched, err := adm.FetchOffsets(ctx(t), group)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := fetched.Lookup(topic, 2); !ok || o.At != 2 {
		t.Fatalf("fetched %+v", o)
	}
	groups, err := adm.ListGroups(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := groups[group]; !ok {
		t.Fatalf("group %s not listed in %v", group, groups.Groups())
	}
	described, err := adm.DescribeGroups(ctx(t), group)
	if err != nil || described[group].State != "Empty" {
		t.Fatalf("describe: %v %+v", err, described[group])
	}
	if resp, err := adm.DeleteGroups(ctx(t), group); err != nil || resp[group].Err != nil {
		t.Fatalf("delete group: %v %+v", err, resp)
	}

	if resp, err := adm.DeleteTopics(ctx(t), topic); err != nil || resp[topic].Err != nil {
		t.Fatalf("delete topic: %v %+v", err, resp)
	}
	// A new client: kgo keeps mapped metadata for MetadataMinAge (5 s), so the deleting
	// client may still answer from its cache.
	gone, err := kadm.NewClient(client(t)).ListTopics(ctx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(gone[topic].Err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("deleted topic: %+v", gone[topic])
	}
}

func value(configs []kadm.Config, key string) string {
	for _, c := range configs {
		if c.Key == key && c.Value != nil {
			return *c.Value
		}
	}
	return ""
}
