// The AWS SDK for Go v2 against a running riffle-broker, unchanged: the clients below are
// built the way an application builds them (config.LoadDefaultConfig, static credentials,
// BaseEndpoint), and every assertion is about what the broker answered.
//
// Starts nothing itself. The broker comes from the environment (tests/compat/test_go_sdk.py
// sets it):
//
//	RIFFLE_ENDPOINT               http://127.0.0.1:PORT, the plaintext listener (HTTP/1.1, h2c)
//	RIFFLE_TLS_ENDPOINT           https://127.0.0.1:PORT (AWS_CA_BUNDLE trusts its certificate),
//	                              for TestTLSHTTP2 and TestSubscriptionLifetime
//	RIFFLE_SUBSCRIPTION_LIFETIME  the broker's subscription_lifetime, for TestSubscriptionLifetime
//
// Every wait is bounded by a context deadline or a loop limit.
package gosdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

const (
	region    = "us-east-1"
	account   = "000000000000"
	accessKey = "AKIDRIFFLECOMPAT"
	secretKey = "riffle-compat-secret"
	shard0    = "shardId-000000000000"

	testTimeout  = 60 * time.Second
	pollLimit    = 20 * time.Second
	eventTimeout = 20 * time.Second
	maxEvents    = 200
)

// The message AWS sends with InvalidSignatureException for a wrong secret key.
const badSignature = "The request signature we calculated does not match the signature you " +
	"provided. Check your AWS Secret Access Key and signing method. Consult the service " +
	"documentation for details."

func env(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set (tests/compat/test_go_sdk.py sets it)", name)
	}
	return v
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newClient builds a Kinesis client as an application would; retries are off so every
// error is the broker's first answer.
func newClient(t *testing.T, ctx context.Context, endpoint, ak, sk string,
	extra ...func(*config.LoadOptions) error) *kinesis.Client {
	t.Helper()
	opts := append([]func(*config.LoadOptions) error{
		config.WithRegion(region),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(ak, sk, "")),
		config.WithRetryMaxAttempts(1),
	}, extra...)
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		t.Fatalf("LoadDefaultConfig: %v", err)
	}
	return kinesis.NewFromConfig(cfg, func(o *kinesis.Options) {
		o.BaseEndpoint = aws.String(endpoint)
	})
}

func client(t *testing.T, ctx context.Context) *kinesis.Client {
	return newClient(t, ctx, env(t, "RIFFLE_ENDPOINT"), accessKey, secretKey)
}

// uniqueName is a stream name for this test: [a-z0-9-] from its name, and a time stamp.
func uniqueName(t *testing.T) string {
	base := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(strings.TrimPrefix(t.Name(), "Test")))
	return fmt.Sprintf("go-%s-%d", base, time.Now().UnixNano()%1_000_000_000)
}

// httpResponse is the HTTP response behind an operation's output.
func httpResponse(t *testing.T, out any) *http.Response {
	t.Helper()
	var r any
	switch o := out.(type) {
	case *kinesis.ListShardsOutput:
		r = awsmiddleware.GetRawResponse(o.ResultMetadata)
	case *kinesis.DescribeStreamSummaryOutput:
		r = awsmiddleware.GetRawResponse(o.ResultMetadata)
	case *kinesis.PutRecordOutput:
		r = awsmiddleware.GetRawResponse(o.ResultMetadata)
	case *kinesis.SubscribeToShardOutput:
		r = awsmiddleware.GetRawResponse(o.ResultMetadata)
	default:
		t.Fatalf("httpResponse: unsupported output %T", out)
	}
	resp, ok := r.(*smithyhttp.Response)
	if !ok || resp == nil || resp.Response == nil {
		t.Fatalf("no raw HTTP response in the output's metadata (got %T)", r)
	}
	return resp.Response
}

// createStream creates a provisioned stream and waits for it with the SDK's
// StreamExists waiter (delays shortened: the suite's broker leaves CREATING after 50 ms).
func createStream(t *testing.T, ctx context.Context, c *kinesis.Client, name string,
	shards int32) *types.StreamDescription {
	t.Helper()
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{
		StreamName: aws.String(name), ShardCount: aws.Int32(shards),
	}); err != nil {
		t.Fatalf("CreateStream %s: %v", name, err)
	}
	w := kinesis.NewStreamExistsWaiter(c, func(o *kinesis.StreamExistsWaiterOptions) {
		o.MinDelay = 50 * time.Millisecond
		o.MaxDelay = 500 * time.Millisecond
	})
	out, err := w.WaitForOutput(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(name)},
		pollLimit)
	if err != nil {
		t.Fatalf("StreamExists waiter for %s: %v", name, err)
	}
	d := out.StreamDescription
	if d.StreamStatus != types.StreamStatusActive {
		t.Fatalf("waiter returned with status %s", d.StreamStatus)
	}
	return d
}

func seqLess(t *testing.T, a, b string) bool {
	t.Helper()
	x, ok1 := new(big.Int).SetString(a, 10)
	y, ok2 := new(big.Int).SetString(b, 10)
	if !ok1 || !ok2 {
		t.Fatalf("sequence numbers are not decimal: %q %q", a, b)
	}
	return x.Cmp(y) < 0
}

func TestCreateStreamWaiter(t *testing.T) {
	ctx := testContext(t)
	c := client(t, ctx)
	name := uniqueName(t)
	d := createStream(t, ctx, c, name, 2)
	wantARN := fmt.Sprintf("arn:aws:kinesis:%s:%s:stream/%s", region, account, name)
	if aws.ToString(d.StreamARN) != wantARN {
		t.Errorf("StreamARN = %q, want %q", aws.ToString(d.StreamARN), wantARN)
	}
	if len(d.Shards) != 2 {
		t.Errorf("DescribeStream shards = %d, want 2", len(d.Shards))
	}
	s, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{
		StreamName: aws.String(name)})
	if err != nil {
		t.Fatalf("DescribeStreamSummary: %v", err)
	}
	sum := s.StreamDescriptionSummary
	if sum.StreamStatus != types.StreamStatusActive || aws.ToInt32(sum.OpenShardCount) != 2 ||
		aws.ToInt32(sum.RetentionPeriodHours) != 24 {
		t.Errorf("summary: status %s, open shards %d, retention %d", sum.StreamStatus,
			aws.ToInt32(sum.OpenShardCount), aws.ToInt32(sum.RetentionPeriodHours))
	}
	if sum.StreamModeDetails == nil || sum.StreamModeDetails.StreamMode != types.StreamModeProvisioned {
		t.Errorf("StreamModeDetails = %+v, want PROVISIONED", sum.StreamModeDetails)
	}
	if d := time.Since(aws.ToTime(sum.StreamCreationTimestamp)); d < -time.Minute || d > 2*time.Minute {
		t.Errorf("StreamCreationTimestamp %v is not about now", sum.StreamCreationTimestamp)
	}
	// The SDK's default transport speaks HTTP/1.1 to an http:// endpoint.
	if resp := httpResponse(t, s); resp.ProtoMajor != 1 || resp.ProtoMinor != 1 {
		t.Errorf("protocol = %s, want HTTP/1.1", resp.Proto)
	}
}

func TestPutRecordGetRecords(t *testing.T) {
	ctx := testContext(t)
	c := client(t, ctx)
	name := uniqueName(t)
	createStream(t, ctx, c, name, 1)

	type put struct {
		data []byte
		key  string
		seq  string
	}
	var want []put
	for i := 0; i < 12; i++ {
		// Binary data, NUL and 0xff included, survives the JSON (base64) round trip.
		data := []byte{byte(i), 0x00, 0xff, '\n', '"'}
		data = append(data, []byte(fmt.Sprintf("go-%02d", i))...)
		key := fmt.Sprintf("pk-%d", i%4)
		out, err := c.PutRecord(ctx, &kinesis.PutRecordInput{
			StreamName: aws.String(name), PartitionKey: aws.String(key), Data: data})
		if err != nil {
			t.Fatalf("PutRecord %d: %v", i, err)
		}
		if aws.ToString(out.ShardId) != shard0 {
			t.Fatalf("PutRecord ShardId = %q, want %s", aws.ToString(out.ShardId), shard0)
		}
		if out.EncryptionType != "" && out.EncryptionType != types.EncryptionTypeNone {
			t.Errorf("EncryptionType = %q", out.EncryptionType)
		}
		seq := aws.ToString(out.SequenceNumber)
		if n := len(want); n > 0 && !seqLess(t, want[n-1].seq, seq) {
			t.Fatalf("sequence numbers not increasing: %s then %s", want[n-1].seq, seq)
		}
		want = append(want, put{data, key, seq})
	}

	it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{
		StreamName: aws.String(name), ShardId: aws.String(shard0),
		ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatalf("GetShardIterator: %v", err)
	}
	iter := it.ShardIterator
	var got []types.Record
	for i := 0; i < 50 && len(got) < len(want) && iter != nil; i++ {
		out, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(5)})
		if err != nil {
			t.Fatalf("GetRecords: %v", err)
		}
		if len(out.Records) > 5 {
			t.Fatalf("GetRecords returned %d records with Limit 5", len(out.Records))
		}
		if out.MillisBehindLatest == nil {
			t.Errorf("GetRecords without MillisBehindLatest")
		}
		got = append(got, out.Records...)
		iter = out.NextShardIterator
	}
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		if !bytes.Equal(r.Data, want[i].data) || aws.ToString(r.PartitionKey) != want[i].key ||
			aws.ToString(r.SequenceNumber) != want[i].seq {
			t.Errorf("record %d = (%q, %q, %s), want (%q, %q, %s)", i, r.Data,
				aws.ToString(r.PartitionKey), aws.ToString(r.SequenceNumber),
				want[i].data, want[i].key, want[i].seq)
		}
		if d := time.Since(aws.ToTime(r.ApproximateArrivalTimestamp)); d < -time.Minute || d > 2*time.Minute {
			t.Errorf("record %d ApproximateArrivalTimestamp %v is not about now", i,
				r.ApproximateArrivalTimestamp)
		}
	}

	// AT_SEQUENCE_NUMBER and AFTER_SEQUENCE_NUMBER start where they say.
	for _, tc := range []struct {
		typ   types.ShardIteratorType
		first int
	}{{types.ShardIteratorTypeAtSequenceNumber, 7}, {types.ShardIteratorTypeAfterSequenceNumber, 8}} {
		it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{
			StreamName: aws.String(name), ShardId: aws.String(shard0), ShardIteratorType: tc.typ,
			StartingSequenceNumber: aws.String(want[7].seq)})
		if err != nil {
			t.Fatalf("GetShardIterator %s: %v", tc.typ, err)
		}
		out, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator,
			Limit: aws.Int32(1)})
		if err != nil {
			t.Fatalf("GetRecords %s: %v", tc.typ, err)
		}
		if len(out.Records) != 1 || aws.ToString(out.Records[0].SequenceNumber) != want[tc.first].seq {
			t.Errorf("%s: got %d records, want record %d first", tc.typ, len(out.Records), tc.first)
		}
	}
}

func TestPutRecordsExplicitHashKey(t *testing.T) {
	ctx := testContext(t)
	c := client(t, ctx)
	name := uniqueName(t)
	createStream(t, ctx, c, name, 4)

	ls, err := c.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(name)})
	if err != nil {
		t.Fatalf("ListShards: %v", err)
	}
	if len(ls.Shards) != 4 {
		t.Fatalf("ListShards: %d shards, want 4", len(ls.Shards))
	}
	// Two records per shard, each aimed at its shard by the shard's starting hash key;
	// the partition key alone would have sent them elsewhere.
	var entries []types.PutRecordsRequestEntry
	var wantShard []string
	for round := 0; round < 2; round++ {
		for i, s := range ls.Shards {
			entries = append(entries, types.PutRecordsRequestEntry{
				Data:            []byte(fmt.Sprintf("r%d-s%d", round, i)),
				PartitionKey:    aws.String("same-key"),
				ExplicitHashKey: s.HashKeyRange.StartingHashKey,
			})
			wantShard = append(wantShard, aws.ToString(s.ShardId))
		}
	}
	out, err := c.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(name), Records: entries})
	if err != nil {
		t.Fatalf("PutRecords: %v", err)
	}
	if aws.ToInt32(out.FailedRecordCount) != 0 {
		t.Errorf("FailedRecordCount = %d", aws.ToInt32(out.FailedRecordCount))
	}
	if len(out.Records) != len(entries) {
		t.Fatalf("PutRecords: %d results for %d entries", len(out.Records), len(entries))
	}
	seqs := map[string][]string{}
	for i, r := range out.Records {
		if r.ErrorCode != nil || r.ErrorMessage != nil {
			t.Errorf("result %d: error %s %s", i, aws.ToString(r.ErrorCode), aws.ToString(r.ErrorMessage))
		}
		if aws.ToString(r.ShardId) != wantShard[i] {
			t.Errorf("result %d: ShardId %s, want %s (explicit hash key %s)", i,
				aws.ToString(r.ShardId), wantShard[i], aws.ToString(entries[i].ExplicitHashKey))
		}
		if aws.ToString(r.SequenceNumber) == "" {
			t.Errorf("result %d: no SequenceNumber", i)
		}
		seqs[aws.ToString(r.ShardId)] = append(seqs[aws.ToString(r.ShardId)], aws.ToString(r.SequenceNumber))
	}
	// Each shard holds exactly its two records, in the order they were sent.
	for i, s := range ls.Shards {
		it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String(name),
			ShardId: s.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
		if err != nil {
			t.Fatalf("GetShardIterator %s: %v", aws.ToString(s.ShardId), err)
		}
		gr, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
		if err != nil {
			t.Fatalf("GetRecords %s: %v", aws.ToString(s.ShardId), err)
		}
		var data, gotSeqs []string
		for _, r := range gr.Records {
			data = append(data, string(r.Data))
			gotSeqs = append(gotSeqs, aws.ToString(r.SequenceNumber))
			if aws.ToString(r.PartitionKey) != "same-key" {
				t.Errorf("%s: partition key %q", aws.ToString(s.ShardId), aws.ToString(r.PartitionKey))
			}
		}
		wantData := fmt.Sprintf("[r0-s%d r1-s%d]", i, i)
		if fmt.Sprint(data) != wantData || fmt.Sprint(gotSeqs) != fmt.Sprint(seqs[aws.ToString(s.ShardId)]) {
			t.Errorf("%s holds %v %v, want %s %v", aws.ToString(s.ShardId), data, gotSeqs, wantData,
				seqs[aws.ToString(s.ShardId)])
		}
	}
}

func TestPagination(t *testing.T) {
	ctx := testContext(t)
	c := client(t, ctx)
	name := uniqueName(t)
	d := createStream(t, ctx, c, name, 5)

	// ListShards: the SDK generates no paginator for it (NextToken excludes StreamName), so
	// this is the loop applications write; each page honours MaxResults.
	var ids []string
	pages := 0
	in := &kinesis.ListShardsInput{StreamName: aws.String(name), MaxResults: aws.Int32(2)}
	for pages < 10 {
		out, err := c.ListShards(ctx, in)
		if err != nil {
			t.Fatalf("ListShards page %d: %v", pages, err)
		}
		pages++
		if len(out.Shards) > 2 {
			t.Fatalf("page %d has %d shards with MaxResults 2", pages, len(out.Shards))
		}
		for _, s := range out.Shards {
			ids = append(ids, aws.ToString(s.ShardId))
		}
		if out.NextToken == nil {
			break
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken, MaxResults: aws.Int32(2)}
	}
	want := "[shardId-000000000000 shardId-000000000001 shardId-000000000002 shardId-000000000003 shardId-000000000004]"
	if fmt.Sprint(ids) != want || pages != 3 {
		t.Errorf("ListShards pages: %d pages, shards %v, want 3 pages of %s", pages, ids, want)
	}

	// DescribeStream through the SDK's (hand-written) paginator: ExclusiveStartShardId.
	ids = nil
	p := kinesis.NewDescribeStreamPaginator(c, &kinesis.DescribeStreamInput{
		StreamName: aws.String(name), Limit: aws.Int32(2)})
	for pages = 0; p.HasMorePages() && pages < 10; pages++ {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("DescribeStream page %d: %v", pages, err)
		}
		for _, s := range out.StreamDescription.Shards {
			ids = append(ids, aws.ToString(s.ShardId))
		}
	}
	if fmt.Sprint(ids) != want || pages != 3 {
		t.Errorf("DescribeStream paginator: %d pages, shards %v, want 3 pages of %s", pages, ids, want)
	}

	// ListStreamConsumers through the SDK's generated NextToken paginator.
	var names []string
	for i := 0; i < 3; i++ {
		names = append(names, fmt.Sprintf("c%d", i))
		if _, err := c.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{
			StreamARN: d.StreamARN, ConsumerName: aws.String(names[i])}); err != nil {
			t.Fatalf("RegisterStreamConsumer: %v", err)
		}
	}
	var got []string
	cp := kinesis.NewListStreamConsumersPaginator(c, &kinesis.ListStreamConsumersInput{
		StreamARN: d.StreamARN, MaxResults: aws.Int32(1)})
	for pages = 0; cp.HasMorePages() && pages < 10; pages++ {
		out, err := cp.NextPage(ctx)
		if err != nil {
			t.Fatalf("ListStreamConsumers page %d: %v", pages, err)
		}
		for _, co := range out.Consumers {
			got = append(got, aws.ToString(co.ConsumerName))
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(names) || pages != 3 {
		t.Errorf("ListStreamConsumers paginator: %d pages, %v, want 3 pages of %v", pages, got, names)
	}
}

func registerActive(t *testing.T, ctx context.Context, c *kinesis.Client, streamARN *string,
	name string) string {
	t.Helper()
	reg, err := c.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{
		StreamARN: streamARN, ConsumerName: aws.String(name)})
	if err != nil {
		t.Fatalf("RegisterStreamConsumer: %v", err)
	}
	arn := aws.ToString(reg.Consumer.ConsumerARN)
	if !strings.HasPrefix(arn, aws.ToString(streamARN)+"/consumer/"+name+":") {
		t.Fatalf("ConsumerARN %q", arn)
	}
	deadline := time.Now().Add(pollLimit)
	for i := 0; i < 1000; i++ {
		d, err := c.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{ConsumerARN: &arn})
		if err != nil {
			t.Fatalf("DescribeStreamConsumer: %v", err)
		}
		if d.ConsumerDescription.ConsumerStatus == types.ConsumerStatusActive {
			return arn
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("consumer %s not ACTIVE within %v", name, pollLimit)
	return ""
}

// readEvents reads SubscribeToShardEvents until n records arrived; bounded by eventTimeout
// and maxEvents.
func readEvents(t *testing.T, stream *kinesis.SubscribeToShardEventStream, n int) []types.Record {
	t.Helper()
	var got []types.Record
	timer := time.NewTimer(eventTimeout)
	defer timer.Stop()
	for events := 0; len(got) < n; events++ {
		if events >= maxEvents {
			t.Fatalf("%d of %d records after %d events", len(got), n, events)
		}
		select {
		case ev, ok := <-stream.Events():
			if !ok {
				t.Fatalf("event channel closed after %d of %d records; Err() = %v", len(got), n, stream.Err())
			}
			e, isEvent := ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent)
			if !isEvent {
				t.Fatalf("unexpected event %T %+v", ev, ev)
			}
			if aws.ToString(e.Value.ContinuationSequenceNumber) == "" {
				t.Errorf("event without ContinuationSequenceNumber")
			}
			if e.Value.MillisBehindLatest == nil || *e.Value.MillisBehindLatest < 0 {
				t.Errorf("event MillisBehindLatest = %v", e.Value.MillisBehindLatest)
			}
			got = append(got, e.Value.Records...)
		case <-timer.C:
			t.Fatalf("%d of %d records after %v; Err() = %v", len(got), n, eventTimeout, stream.Err())
		}
	}
	return got
}

// closeStream closes the event stream and checks that the channel ends and Err() is nil.
func closeStream(t *testing.T, stream *kinesis.SubscribeToShardEventStream) {
	t.Helper()
	if err := stream.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	for i := 0; i < 1000; i++ {
		select {
		case _, ok := <-stream.Events():
			if !ok {
				if err := stream.Err(); err != nil {
					t.Errorf("Err() after Close = %v", err)
				}
				return
			}
		case <-timer.C:
			t.Fatalf("event channel still open 10 s after Close")
		}
	}
	t.Fatalf("event channel kept delivering after Close")
}

// sent is what PutRecord wrote, in order.
type sent struct {
	data [][]byte
	keys []string
	seqs []string
}

func (s sent) then(more sent) sent {
	return sent{append(s.data[:len(s.data):len(s.data)], more.data...),
		append(s.keys[:len(s.keys):len(s.keys)], more.keys...),
		append(s.seqs[:len(s.seqs):len(s.seqs)], more.seqs...)}
}

func putSeq(t *testing.T, ctx context.Context, c *kinesis.Client, name, prefix string, n int) sent {
	t.Helper()
	var w sent
	for i := 0; i < n; i++ {
		d := []byte(fmt.Sprintf("%s-%03d", prefix, i))
		k := fmt.Sprintf("%s-k%d", prefix, i%3)
		out, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String(name),
			PartitionKey: aws.String(k), Data: d})
		if err != nil {
			t.Fatalf("PutRecord: %v", err)
		}
		w.data = append(w.data, d)
		w.keys = append(w.keys, k)
		w.seqs = append(w.seqs, aws.ToString(out.SequenceNumber))
	}
	return w
}

func checkRecords(t *testing.T, got []types.Record, w sent) {
	t.Helper()
	if len(got) != len(w.data) {
		t.Fatalf("received %d records, want %d", len(got), len(w.data))
	}
	for i, r := range got {
		if !bytes.Equal(r.Data, w.data[i]) || aws.ToString(r.SequenceNumber) != w.seqs[i] ||
			aws.ToString(r.PartitionKey) != w.keys[i] {
			t.Errorf("record %d = (%q, %s, %s), want (%q, %s, %s)", i, r.Data,
				aws.ToString(r.SequenceNumber), aws.ToString(r.PartitionKey), w.data[i], w.seqs[i], w.keys[i])
		}
		if d := time.Since(aws.ToTime(r.ApproximateArrivalTimestamp)); d < -time.Minute || d > 2*time.Minute {
			t.Errorf("record %d ApproximateArrivalTimestamp %v is not about now", i, r.ApproximateArrivalTimestamp)
		}
	}
}

// subscribeAndRead runs the fan-out scenario on client c; wantProto is "HTTP/1.1" or "HTTP/2.0".
func subscribeAndRead(t *testing.T, ctx context.Context, c *kinesis.Client, wantProto string) {
	name := uniqueName(t)
	d := createStream(t, ctx, c, name, 1)
	consumer := registerActive(t, ctx, c, d.StreamARN, "go-reader")

	sub, err := c.SubscribeToShard(ctx, &kinesis.SubscribeToShardInput{
		ConsumerARN: aws.String(consumer), ShardId: aws.String(shard0),
		StartingPosition: &types.StartingPosition{Type: types.ShardIteratorTypeLatest}})
	if err != nil {
		t.Fatalf("SubscribeToShard: %v", err)
	}
	stream := sub.GetStream()
	defer stream.Close()
	resp := httpResponse(t, sub)
	if resp.Proto != wantProto {
		t.Errorf("SubscribeToShard protocol = %s, want %s", resp.Proto, wantProto)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.amazon.eventstream" {
		t.Errorf("SubscribeToShard Content-Type = %q", ct)
	}

	// A second subscription of the same consumer to the shard within 5 s is refused.
	_, err = c.SubscribeToShard(ctx, &kinesis.SubscribeToShardInput{
		ConsumerARN: aws.String(consumer), ShardId: aws.String(shard0),
		StartingPosition: &types.StartingPosition{Type: types.ShardIteratorTypeLatest}})
	var inUse *types.ResourceInUseException
	if !errors.As(err, &inUse) {
		t.Errorf("second SubscribeToShard: %v (%T), want *types.ResourceInUseException", err, err)
	}

	first := putSeq(t, ctx, c, name, "latest", 25)
	checkRecords(t, readEvents(t, stream, len(first.data)), first)
	closeStream(t, stream)

	// A second consumer from TRIM_HORIZON gets the same records, history first, then new ones.
	consumer2 := registerActive(t, ctx, c, d.StreamARN, "go-history")
	sub2, err := c.SubscribeToShard(ctx, &kinesis.SubscribeToShardInput{
		ConsumerARN: aws.String(consumer2), ShardId: aws.String(shard0),
		StartingPosition: &types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon}})
	if err != nil {
		t.Fatalf("SubscribeToShard TRIM_HORIZON: %v", err)
	}
	stream2 := sub2.GetStream()
	defer stream2.Close()
	all := first.then(putSeq(t, ctx, c, name, "later", 5))
	checkRecords(t, readEvents(t, stream2, len(all.data)), all)
	closeStream(t, stream2)
}

func TestSubscribeToShard(t *testing.T) {
	ctx := testContext(t)
	subscribeAndRead(t, ctx, client(t, ctx), "HTTP/1.1")
}

// h2c: Go's net/http speaks HTTP/2 with prior knowledge on http:// when asked to
// (http.Protocols, Go 1.24+); the SDK runs unchanged on top.
func TestSubscribeToShardH2C(t *testing.T) {
	ctx := testContext(t)
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	hc := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.Protocols = &protocols
	})
	c := newClient(t, ctx, env(t, "RIFFLE_ENDPOINT"), accessKey, secretKey, config.WithHTTPClient(hc))
	subscribeAndRead(t, ctx, c, "HTTP/2.0")
}

// TLS: the SDK's default transport negotiates h2 by ALPN on https://; AWS_CA_BUNDLE (read
// by LoadDefaultConfig) trusts the test certificate.
func TestTLSHTTP2(t *testing.T) {
	ctx := testContext(t)
	if os.Getenv("AWS_CA_BUNDLE") == "" {
		t.Fatalf("AWS_CA_BUNDLE is not set")
	}
	c := newClient(t, ctx, env(t, "RIFFLE_TLS_ENDPOINT"), accessKey, secretKey)
	name := uniqueName(t)
	createStream(t, ctx, c, name, 1)
	ls, err := c.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(name)})
	if err != nil {
		t.Fatalf("ListShards over TLS: %v", err)
	}
	if resp := httpResponse(t, ls); resp.Proto != "HTTP/2.0" || resp.TLS == nil ||
		resp.TLS.NegotiatedProtocol != "h2" {
		t.Errorf("ListShards over TLS: protocol %s", resp.Proto)
	}
	subscribeAndRead(t, ctx, c, "HTTP/2.0")
}

func apiError(t *testing.T, err error) (smithy.APIError, int) {
	t.Helper()
	var api smithy.APIError
	if !errors.As(err, &api) {
		t.Fatalf("error %v (%T) is not a smithy.APIError", err, err)
	}
	var re *awshttp.ResponseError
	status := 0
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	return api, status
}

func TestResourceNotFound(t *testing.T) {
	ctx := testContext(t)
	c := client(t, ctx)
	name := uniqueName(t)
	// AWS's messages (kinesalite copies them): GetShardIterator names the shard.
	streamMsg := fmt.Sprintf("Stream %s under account %s not found.", name, account)
	wantMsg := map[string]string{
		"DescribeStreamSummary": streamMsg,
		"PutRecord":             streamMsg,
		"GetShardIterator": fmt.Sprintf("Shard %s in stream %s under account %s does not exist",
			shard0, name, account),
	}
	calls := map[string]func() error{
		"DescribeStreamSummary": func() error {
			_, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: &name})
			return err
		},
		"PutRecord": func() error {
			_, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: &name,
				PartitionKey: aws.String("k"), Data: []byte("x")})
			return err
		},
		"GetShardIterator": func() error {
			_, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: &name,
				ShardId: aws.String(shard0), ShardIteratorType: types.ShardIteratorTypeLatest})
			return err
		},
	}
	for op, call := range calls {
		err := call()
		var nf *types.ResourceNotFoundException
		if !errors.As(err, &nf) {
			t.Errorf("%s: %v (%T), want *types.ResourceNotFoundException", op, err, err)
			continue
		}
		if nf.ErrorMessage() != wantMsg[op] || nf.ErrorCode() != "ResourceNotFoundException" {
			t.Errorf("%s: %s %q, want %q", op, nf.ErrorCode(), nf.ErrorMessage(), wantMsg[op])
		}
		if _, status := apiError(t, err); status != 400 {
			t.Errorf("%s: HTTP status %d, want 400", op, status)
		}
	}
	// SubscribeToShard with a consumer that does not exist fails before the event stream.
	arn := fmt.Sprintf("arn:aws:kinesis:%s:%s:stream/%s/consumer/ghost:1700000000", region, account, name)
	_, err := c.SubscribeToShard(ctx, &kinesis.SubscribeToShardInput{ConsumerARN: &arn,
		ShardId: aws.String(shard0), StartingPosition: &types.StartingPosition{Type: types.ShardIteratorTypeLatest}})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Errorf("SubscribeToShard unknown consumer: %v (%T), want *types.ResourceNotFoundException", err, err)
	}
}

func TestWrongSecretKey(t *testing.T) {
	ctx := testContext(t)
	endpoint := env(t, "RIFFLE_ENDPOINT")
	// The right key works (so the failures below are about the signature).
	if _, err := client(t, ctx).ListStreams(ctx, &kinesis.ListStreamsInput{Limit: aws.Int32(1)}); err != nil {
		t.Fatalf("ListStreams with the right key: %v", err)
	}
	bad := newClient(t, ctx, endpoint, accessKey, secretKey+"-wrong")
	_, err := bad.ListStreams(ctx, &kinesis.ListStreamsInput{Limit: aws.Int32(1)})
	if err == nil {
		t.Fatalf("ListStreams signed with a wrong secret key succeeded")
	}
	api, status := apiError(t, err)
	if api.ErrorCode() != "InvalidSignatureException" || api.ErrorMessage() != badSignature || status != 400 {
		t.Errorf("wrong secret: %s %q (HTTP %d), want InvalidSignatureException %q (HTTP 400)",
			api.ErrorCode(), api.ErrorMessage(), status, badSignature)
	}
	// PutRecord too: a body the signature does not cover is refused.
	_, err = bad.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("any"),
		PartitionKey: aws.String("k"), Data: []byte("x")})
	if api, _ := apiError(t, err); api.ErrorCode() != "InvalidSignatureException" {
		t.Errorf("PutRecord wrong secret: %s, want InvalidSignatureException", api.ErrorCode())
	}
	// SubscribeToShard too: refused before any event stream opens.
	arn := fmt.Sprintf("arn:aws:kinesis:%s:%s:stream/any/consumer/c:1700000000", region, account)
	_, err = bad.SubscribeToShard(ctx, &kinesis.SubscribeToShardInput{ConsumerARN: &arn,
		ShardId: aws.String(shard0), StartingPosition: &types.StartingPosition{Type: types.ShardIteratorTypeLatest}})
	if api, status := apiError(t, err); api.ErrorCode() != "InvalidSignatureException" || status != 400 {
		t.Errorf("SubscribeToShard wrong secret: %s (HTTP %d), want InvalidSignatureException", api.ErrorCode(), status)
	}
	unknown := newClient(t, ctx, endpoint, "AKIDUNKNOWNGO", secretKey)
	_, err = unknown.ListStreams(ctx, &kinesis.ListStreamsInput{Limit: aws.Int32(1)})
	if api, status := apiError(t, err); api.ErrorCode() != "UnrecognizedClientException" || status != 400 ||
		api.ErrorMessage() != "The security token included in the request is invalid." {
		t.Errorf("unknown key: %s %q (HTTP %d), want UnrecognizedClientException", api.ErrorCode(),
			api.ErrorMessage(), status)
	}
}

// subscribe opens a subscription and returns its event stream (closed at test end).
func subscribe(t *testing.T, ctx context.Context, c *kinesis.Client, consumer string,
	pos types.StartingPosition) *kinesis.SubscribeToShardEventStream {
	t.Helper()
	sub, err := c.SubscribeToShard(ctx, &kinesis.SubscribeToShardInput{ConsumerARN: aws.String(consumer),
		ShardId: aws.String(shard0), StartingPosition: &pos})
	if err != nil {
		t.Fatalf("SubscribeToShard %+v: %v", pos, err)
	}
	stream := sub.GetStream()
	t.Cleanup(func() { stream.Close() })
	return stream
}

// drain reads events until the broker ends the subscription (the channel closes by itself),
// bounded by limit; it returns the records and the last ContinuationSequenceNumber.
func drain(t *testing.T, stream *kinesis.SubscribeToShardEventStream, limit time.Duration) ([]types.Record, string) {
	t.Helper()
	var got []types.Record
	var cont string
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for events := 0; events < maxEvents; events++ {
		select {
		case ev, ok := <-stream.Events():
			if !ok {
				if err := stream.Err(); err != nil {
					t.Fatalf("subscription ended with Err() = %v", err)
				}
				return got, cont
			}
			e, isEvent := ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent)
			if !isEvent {
				t.Fatalf("unexpected event %T %+v", ev, ev)
			}
			got = append(got, e.Value.Records...)
			cont = aws.ToString(e.Value.ContinuationSequenceNumber)
		case <-timer.C:
			t.Fatalf("subscription still open after %v (%d records)", limit, len(got))
		}
	}
	t.Fatalf("more than %d events", maxEvents)
	return nil, ""
}

// The broker ends a subscription at its lifetime (RIFFLE_SUBSCRIPTION_LIFETIME, short on the
// second broker): the SDK's event channel closes with Err() nil, and a consumer resuming
// AFTER_SEQUENCE_NUMBER the last ContinuationSequenceNumber misses and repeats nothing.
// Over HTTP/1.1, h2c and TLS h2.
func TestSubscriptionLifetime(t *testing.T) {
	ctx := testContext(t)
	lifetime, err := time.ParseDuration(env(t, "RIFFLE_SUBSCRIPTION_LIFETIME"))
	if err != nil {
		t.Fatalf("RIFFLE_SUBSCRIPTION_LIFETIME: %v", err)
	}
	if os.Getenv("AWS_CA_BUNDLE") == "" {
		t.Fatalf("AWS_CA_BUNDLE is not set")
	}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	h2c := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.Protocols = &protocols
	})
	clients := []struct {
		name, proto string
		c           *kinesis.Client
	}{
		{"http1", "HTTP/1.1", newClient(t, ctx, env(t, "RIFFLE_ENDPOINT"), accessKey, secretKey)},
		{"h2c", "HTTP/2.0", newClient(t, ctx, env(t, "RIFFLE_ENDPOINT"), accessKey, secretKey,
			config.WithHTTPClient(h2c))},
		{"tls-h2", "HTTP/2.0", newClient(t, ctx, env(t, "RIFFLE_TLS_ENDPOINT"), accessKey, secretKey)},
	}
	for _, tc := range clients {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := tc.c
			name := uniqueName(t)
			d := createStream(t, ctx, c, name, 1)
			consumer := registerActive(t, ctx, c, d.StreamARN, "go-lifetime")
			started := time.Now()
			stream := subscribe(t, ctx, c, consumer, types.StartingPosition{Type: types.ShardIteratorTypeLatest})
			first := putSeq(t, ctx, c, name, "before", 3)
			got, cont := drain(t, stream, lifetime+10*time.Second)
			if took := time.Since(started); took < lifetime-time.Second {
				t.Errorf("subscription ended after %v, lifetime is %v", took, lifetime)
			}
			t.Logf("first subscription ended after %v", time.Since(started))
			checkRecords(t, got, first)
			if cont == "" {
				t.Fatalf("no ContinuationSequenceNumber")
			}
			// Records written between the subscriptions are not lost.
			between := putSeq(t, ctx, c, name, "between", 2)
			stream = subscribe(t, ctx, c, consumer, types.StartingPosition{
				Type: types.ShardIteratorTypeAfterSequenceNumber, SequenceNumber: aws.String(cont)})
			after := between.then(putSeq(t, ctx, c, name, "after", 2))
			checkRecords(t, readEvents(t, stream, len(after.data)), after)
			closeStream(t, stream)
			t.Logf("resumed subscription read and closed after %v", time.Since(started))
		})
	}
}

// Resharding as a Go consumer sees it: UpdateShardCount closes the parent; GetRecords at its
// end returns ChildShards and no NextShardIterator; a subscription to it delivers the records,
// then an event with ChildShards, then ends cleanly.
func TestReshardChildShards(t *testing.T) {
	ctx := testContext(t)
	c := client(t, ctx)
	name := uniqueName(t)
	d := createStream(t, ctx, c, name, 1)
	consumer := registerActive(t, ctx, c, d.StreamARN, "go-child")
	before := putSeq(t, ctx, c, name, "parent", 3)

	up, err := c.UpdateShardCount(ctx, &kinesis.UpdateShardCountInput{StreamName: aws.String(name),
		TargetShardCount: aws.Int32(2), ScalingType: types.ScalingTypeUniformScaling})
	if err != nil {
		t.Fatalf("UpdateShardCount: %v", err)
	}
	if aws.ToInt32(up.CurrentShardCount) != 1 || aws.ToInt32(up.TargetShardCount) != 2 {
		t.Errorf("UpdateShardCount: current %d target %d", aws.ToInt32(up.CurrentShardCount),
			aws.ToInt32(up.TargetShardCount))
	}
	w := kinesis.NewStreamExistsWaiter(c, func(o *kinesis.StreamExistsWaiterOptions) {
		o.MinDelay = 50 * time.Millisecond
		o.MaxDelay = 500 * time.Millisecond
	})
	if err := w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(name)}, pollLimit); err != nil {
		t.Fatalf("StreamExists waiter after UpdateShardCount: %v", err)
	}
	checkChildren := func(where string, children []types.ChildShard) {
		t.Helper()
		var ids []string
		for _, ch := range children {
			ids = append(ids, aws.ToString(ch.ShardId))
			if fmt.Sprint(ch.ParentShards) != "["+shard0+"]" || ch.HashKeyRange == nil {
				t.Errorf("%s: child %s parents %v range %+v", where, aws.ToString(ch.ShardId),
					ch.ParentShards, ch.HashKeyRange)
			}
		}
		if fmt.Sprint(ids) != "[shardId-000000000001 shardId-000000000002]" {
			t.Errorf("%s: ChildShards %v", where, ids)
		}
	}

	it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String(name),
		ShardId: aws.String(shard0), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatalf("GetShardIterator: %v", err)
	}
	var got []types.Record
	iter := it.ShardIterator
	var last *kinesis.GetRecordsOutput
	for i := 0; i < 20 && iter != nil; i++ {
		last, err = c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
		if err != nil {
			t.Fatalf("GetRecords: %v", err)
		}
		got = append(got, last.Records...)
		iter = last.NextShardIterator
	}
	if iter != nil {
		t.Fatalf("closed shard still has a NextShardIterator after 20 calls")
	}
	checkRecords(t, got, before)
	checkChildren("GetRecords", last.ChildShards)

	stream := subscribe(t, ctx, c, consumer, types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon})
	var subGot []types.Record
	var children []types.ChildShard
	timer := time.NewTimer(eventTimeout)
	defer timer.Stop()
	for events, open := 0, true; open; events++ {
		if events >= maxEvents {
			t.Fatalf("subscription to the closed shard did not end after %d events", events)
		}
		select {
		case ev, ok := <-stream.Events():
			if !ok {
				open = false
				break
			}
			e, isEvent := ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent)
			if !isEvent {
				t.Fatalf("unexpected event %T", ev)
			}
			subGot = append(subGot, e.Value.Records...)
			if len(e.Value.ChildShards) > 0 {
				children = e.Value.ChildShards
			}
		case <-timer.C:
			t.Fatalf("subscription to the closed shard still open after %v (%d records, children %v)",
				eventTimeout, len(subGot), children)
		}
	}
	if err := stream.Err(); err != nil {
		t.Errorf("subscription to the closed shard ended with Err() = %v", err)
	}
	checkRecords(t, subGot, before)
	checkChildren("SubscribeToShard", children)
}

// StreamARN in place of StreamName (the Go SDK's endpoint rules look at it), and AT_TIMESTAMP
// iterators (the SDK sends the timestamp as epoch seconds).
func TestStreamARNAndTimestamp(t *testing.T) {
	ctx := testContext(t)
	c := client(t, ctx)
	name := uniqueName(t)
	d := createStream(t, ctx, c, name, 1)
	arn := d.StreamARN
	start := time.Now().Add(-2 * time.Second)
	var w sent
	for i := 0; i < 3; i++ {
		out, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamARN: arn,
			PartitionKey: aws.String("arn-k"), Data: []byte(fmt.Sprintf("arn-%d", i))})
		if err != nil {
			t.Fatalf("PutRecord by StreamARN: %v", err)
		}
		w.data = append(w.data, []byte(fmt.Sprintf("arn-%d", i)))
		w.keys = append(w.keys, "arn-k")
		w.seqs = append(w.seqs, aws.ToString(out.SequenceNumber))
	}
	pr, err := c.PutRecords(ctx, &kinesis.PutRecordsInput{StreamARN: arn, Records: []types.PutRecordsRequestEntry{
		{PartitionKey: aws.String("arn-k"), Data: []byte("arn-3")}}})
	if err != nil || len(pr.Records) != 1 {
		t.Fatalf("PutRecords by StreamARN: %v", err)
	}
	w.data = append(w.data, []byte("arn-3"))
	w.keys = append(w.keys, "arn-k")
	w.seqs = append(w.seqs, aws.ToString(pr.Records[0].SequenceNumber))

	sum, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamARN: arn})
	if err != nil || aws.ToString(sum.StreamDescriptionSummary.StreamName) != name {
		t.Fatalf("DescribeStreamSummary by StreamARN: %v", err)
	}
	ls, err := c.ListShards(ctx, &kinesis.ListShardsInput{StreamARN: arn})
	if err != nil || len(ls.Shards) != 1 {
		t.Fatalf("ListShards by StreamARN: %v", err)
	}
	read := func(typ types.ShardIteratorType, ts *time.Time) []types.Record {
		t.Helper()
		it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamARN: arn,
			ShardId: aws.String(shard0), ShardIteratorType: typ, Timestamp: ts})
		if err != nil {
			t.Fatalf("GetShardIterator %s by StreamARN: %v", typ, err)
		}
		out, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{StreamARN: arn, ShardIterator: it.ShardIterator})
		if err != nil {
			t.Fatalf("GetRecords by StreamARN: %v", err)
		}
		return out.Records
	}
	checkRecords(t, read(types.ShardIteratorTypeTrimHorizon, nil), w)
	checkRecords(t, read(types.ShardIteratorTypeAtTimestamp, &start), w)
	// A timestamp in the future is InvalidArgumentException, with AWS's message.
	future := time.Now().Add(time.Hour)
	_, err = c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamARN: arn,
		ShardId: aws.String(shard0), ShardIteratorType: types.ShardIteratorTypeAtTimestamp, Timestamp: &future})
	var invalid *types.InvalidArgumentException
	if !errors.As(err, &invalid) || !strings.HasPrefix(invalid.ErrorMessage(),
		"The timestampInMillis parameter cannot be greater than the currentTimestampInMillis.") {
		t.Errorf("AT_TIMESTAMP an hour ahead: %v (%T), want *types.InvalidArgumentException", err, err)
	} else if want := fmt.Sprintf("timestampInMillis: %d,", future.UnixMilli()); !strings.Contains(invalid.ErrorMessage(), want) {
		t.Errorf("AT_TIMESTAMP an hour ahead: %q does not contain %q (the SDK's epoch seconds, read to the millisecond)",
			invalid.ErrorMessage(), want)
	}
}
