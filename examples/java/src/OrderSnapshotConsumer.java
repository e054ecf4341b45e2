// Reads the connector's output topics, decodes them with Apache Avro's BinaryMessageDecoder from
// the .avsc files alone, and judges each snapshot complete by order_count.
//
//   java -cp build:/usr/share/java/avro.jar:... OrderSnapshotConsumer \
//        --bootstrap HOST:PORT --avro-dir ../../avro --orders-topic orders \
//        --results-topic order-query-results --request-id r-1 [--request-id r-2 ...] \
//        [--timeout-ms 60000] [--session-timeout-ms 6000] [--librdkafka PATH]
//        [--config librdkafka.setting=value ...]
//        [--account-status-topic account-status --status-key EXCHANGE:ACCOUNT ...]
//        [--order-changes-topic order-changes --change-key EXCHANGE:ACCOUNT:ORDER_ID ...]
//
// Broker security comes from the environment: KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM,
// KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CAFILE.
//
// Prints one JSON line per request id (the summary the test suite checks) and exits 0 when every
// requested snapshot was judged (complete or FAILED) before the timeout, 1 otherwise. With the
// account-status and order-changes topics (docs/contract.md, "Freshness as data"), it also waits
// for a status per --status-key and a change per --change-key, and prints the account's last
// status (a compacted topic: the last record per key wins) and each order's changes.
//
// The Avro side is the standard one: BinaryMessageDecoder checks the C3 01 marker and the
// CRC-64-AVRO fingerprint, then decodes the body (libavro-java). The Kafka side: Debian ships no
// Java Kafka client (and this build has no Maven Central), so the consumer is librdkafka, the C
// client behind confluent-kafka, called through JNA (Debian: librdkafka1, libjna-java). In your
// service, use org.apache.kafka:kafka-clients instead: the decoding and the completeness rules
// below stay exactly the same (see docs/consuming.md).

import com.sun.jna.Library;
import com.sun.jna.Native;
import com.sun.jna.Pointer;
import java.io.File;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;

public final class OrderSnapshotConsumer {

  /** The few librdkafka functions a high-level consumer needs (rdkafka.h). */
  public interface RdKafka extends Library {
    int RD_KAFKA_CONSUMER = 1;
    int RD_KAFKA_CONF_OK = 0;
    int RD_KAFKA_RESP_ERR__PARTITION_EOF = -191;

    Pointer rd_kafka_conf_new();

    int rd_kafka_conf_set(Pointer conf, String name, String value, byte[] errstr, long size);

    Pointer rd_kafka_new(int type, Pointer conf, byte[] errstr, long size);

    int rd_kafka_poll_set_consumer(Pointer rk);

    Pointer rd_kafka_topic_partition_list_new(int size);

    Pointer rd_kafka_topic_partition_list_add(Pointer list, String topic, int partition);

    void rd_kafka_topic_partition_list_destroy(Pointer list);

    int rd_kafka_subscribe(Pointer rk, Pointer topics);

    Pointer rd_kafka_consumer_poll(Pointer rk, int timeoutMs);

    String rd_kafka_topic_name(Pointer rkt);

    String rd_kafka_err2str(int err);

    void rd_kafka_message_destroy(Pointer msg);

    int rd_kafka_consumer_close(Pointer rk);

    void rd_kafka_destroy(Pointer rk);

    String rd_kafka_version_str();
  }

  // rd_kafka_message_t on LP64: err@0, rkt@8, partition@16, payload@24, len@32, key@40,
  // key_len@48, offset@56.
  private static final long MSG_ERR = 0, MSG_RKT = 8, MSG_PAYLOAD = 24, MSG_LEN = 32;
  private static final long MSG_KEY = 40, MSG_KEY_LEN = 48;

  /**
   * The last AccountStatus of an account, as a JSON line. A risk engine joins open-orders with
   * account-status on exchange:account: rows of a FRESH or FAILING account are open as of as_of;
   * rows of a STALE, UNKNOWN or DISABLED account are unknown.
   */
  static String statusJson(String key, GenericRecord s) {
    if (s == null) {
      return "{\"status_key\":" + quote(key) + ",\"status\":null}";
    }
    String status = s.get("status").toString();
    boolean trusted = status.equals("FRESH") || status.equals("FAILING");
    return "{\"status_key\":" + quote(key)
        + ",\"status\":" + quote(status)
        + ",\"as_of\":" + s.get("as_of")
        + ",\"as_of_request_id\":" + nullableString(s.get("as_of_request_id"))
        + ",\"open_orders\":" + s.get("open_orders")
        + ",\"consecutive_failures\":" + s.get("consecutive_failures")
        + ",\"last_error_code\":" + nullableString(s.get("last_error_code"))
        + ",\"rows_are\":" + quote(trusted ? "open" : "unknown") + "}";
  }

  /** One OrderChange, summarized as a JSON object. */
  static String changeJson(GenericRecord c) {
    StringBuilder fields = new StringBuilder("[");
    for (Object f : (List<?>) c.get("changed_fields")) {
      fields.append(fields.length() > 1 ? "," : "").append(quote(f.toString()));
    }
    fields.append(']');
    GenericRecord before = (GenericRecord) c.get("before");
    GenericRecord after = (GenericRecord) c.get("after");
    return "{\"change\":" + quote(c.get("change").toString())
        + ",\"changed_fields\":" + fields
        + ",\"detected_by\":" + quote(c.get("detected_by").toString())
        + ",\"before_status\":" + (before == null ? "null" : quote(before.get("status").toString()))
        + ",\"after_status\":" + (after == null ? "null" : quote(after.get("status").toString()))
        + ",\"seen_open_at\":" + c.get("seen_open_at") + "}";
  }

  static String nullableString(Object value) {
    return value == null ? "null" : quote(value.toString());
  }

  /** One command's outputs as seen so far, deduplicated on order_id. */
  static final class Snapshot {
    final String requestId;
    GenericRecord result; // the first QueryResult; an at-least-once repeat agrees with it
    int resultsSeen;
    int orderEventsSeen;
    final Map<String, Integer> orders = new TreeMap<>(); // order_id -> snapshot_seq
    final TreeSet<Integer> sizes = new TreeSet<>();

    Snapshot(String requestId) {
      this.requestId = requestId;
    }

    void addOrder(GenericRecord ev) {
      orderEventsSeen++;
      String orderId = ev.get("order_id").toString();
      if (orders.containsKey(orderId)) {
        return; // a repeat: same request_id and order_id, new event_id
      }
      orders.put(orderId, (Integer) ev.get("snapshot_seq"));
      sizes.add((Integer) ev.get("snapshot_size"));
    }

    void addResult(GenericRecord r) {
      resultsSeen++;
      if (result == null) {
        result = r;
      }
    }

    String status() {
      return result == null ? null : result.get("status").toString();
    }

    int orderCount() {
      return (Integer) result.get("order_count");
    }

    /** Judged = the QueryResult is in and, when OK, order_count distinct orders are held. */
    boolean judged() {
      if (result == null) {
        return false;
      }
      return "FAILED".equals(status()) || orders.size() >= orderCount();
    }

    /** Complete = OK, exactly order_count distinct orders, snapshot_seq covering 1..n. */
    boolean complete() {
      if (result == null || !"OK".equals(status())) {
        return false;
      }
      int n = orderCount();
      if (orders.size() != n) {
        return false;
      }
      TreeSet<Integer> seqs = new TreeSet<>(orders.values());
      for (int s = 1; s <= n; s++) {
        if (!seqs.contains(s)) {
          return false;
        }
      }
      return n == 0 || (sizes.size() == 1 && sizes.first() == n);
    }

    String toJson() {
      Object errorCode = result == null ? null : result.get("error_code");
      StringBuilder ids = new StringBuilder("[");
      for (String id : orders.keySet()) {
        ids.append(ids.length() > 1 ? "," : "").append(quote(id));
      }
      ids.append(']');
      return "{\"request_id\":" + quote(requestId)
          + ",\"status\":" + (result == null ? "null" : quote(status()))
          + ",\"error_code\":" + (errorCode == null ? "null" : quote(errorCode.toString()))
          + ",\"order_count\":" + (result == null ? "null" : Integer.toString(orderCount()))
          + ",\"results_seen\":" + resultsSeen
          + ",\"order_events_seen\":" + orderEventsSeen
          + ",\"distinct_orders\":" + orders.size()
          + ",\"complete\":" + complete()
          + ",\"order_ids\":" + ids + "}";
    }
  }

  static String quote(String s) {
    StringBuilder b = new StringBuilder("\"");
    for (char c : s.toCharArray()) {
      if (c == '"' || c == '\\') {
        b.append('\\').append(c);
      } else if (c < 0x20) {
        b.append(String.format("\\u%04x", (int) c));
      } else {
        b.append(c);
      }
    }
    return b.append('"').toString();
  }

  static Schema load(String avroDir, String name) throws Exception {
    return new Schema.Parser().parse(new File(avroDir, name + ".avsc"));
  }

  static void set(RdKafka rd, Pointer conf, String name, String value) {
    byte[] err = new byte[512];
    if (rd.rd_kafka_conf_set(conf, name, value, err, err.length) != RdKafka.RD_KAFKA_CONF_OK) {
      throw new IllegalArgumentException(name + ": " + Native.toString(err));
    }
  }

  public static void main(String[] argv) throws Exception {
    Map<String, String> opts = new LinkedHashMap<>();
    List<String> requestIds = new ArrayList<>();
    List<String> extraConfig = new ArrayList<>(); // librdkafka name=value, e.g. for a dev broker
    List<String> statusKeys = new ArrayList<>();
    List<String> changeKeys = new ArrayList<>();
    opts.put("--timeout-ms", "60000");
    opts.put("--session-timeout-ms", "30000");
    for (int i = 0; i + 1 < argv.length; i += 2) {
      if (argv[i].equals("--request-id")) {
        requestIds.add(argv[i + 1]);
      } else if (argv[i].equals("--config")) {
        extraConfig.add(argv[i + 1]);
      } else if (argv[i].equals("--status-key")) {
        statusKeys.add(argv[i + 1]);
      } else if (argv[i].equals("--change-key")) {
        changeKeys.add(argv[i + 1]);
      } else {
        opts.put(argv[i], argv[i + 1]);
      }
    }
    for (String required : new String[] {"--bootstrap", "--avro-dir", "--orders-topic",
        "--results-topic"}) {
      if (!opts.containsKey(required)) {
        System.err.println("error: " + required + " is required");
        System.exit(2);
      }
    }
    String ordersTopic = opts.get("--orders-topic");
    String resultsTopic = opts.get("--results-topic");
    String statusTopic = opts.get("--account-status-topic");
    String changesTopic = opts.get("--order-changes-topic");
    if ((!statusKeys.isEmpty() && statusTopic == null)
        || (!changeKeys.isEmpty() && changesTopic == null)) {
      System.err.println("error: --status-key needs --account-status-topic, "
          + "--change-key needs --order-changes-topic");
      System.exit(2);
    }

    // Decoders from the .avsc files alone. BinaryMessageDecoder rejects anything that is not
    // C3 01 + this schema's fingerprint (MissingSchemaException / BadHeaderException).
    Schema orderEvent = load(opts.get("--avro-dir"), "OrderEvent");
    Schema queryResult = load(opts.get("--avro-dir"), "QueryResult");
    BinaryMessageDecoder<GenericRecord> orderDecoder =
        new BinaryMessageDecoder<>(GenericData.get(), orderEvent);
    BinaryMessageDecoder<GenericRecord> resultDecoder =
        new BinaryMessageDecoder<>(GenericData.get(), queryResult);
    // Records written with an earlier release still decode (resolved to the current schema): the
    // decoder picks the writer schema by fingerprint. avro/released/<version>/ holds each release.
    File[] released = new File(opts.get("--avro-dir"), "released").listFiles(File::isDirectory);
    for (File dir : released == null ? new File[0] : released) {
      if (new File(dir, "OrderEvent.avsc").isFile()) {
        orderDecoder.addSchema(load(dir.getPath(), "OrderEvent"));
      }
      if (new File(dir, "QueryResult.avsc").isFile()) {
        resultDecoder.addSchema(load(dir.getPath(), "QueryResult"));
      }
    }

    // Each .avsc is parsed on its own (OrderChange.avsc defines Side, OrderStatus, ... itself).
    BinaryMessageDecoder<GenericRecord> statusDecoder = statusTopic == null ? null
        : new BinaryMessageDecoder<>(GenericData.get(), load(opts.get("--avro-dir"), "AccountStatus"));
    BinaryMessageDecoder<GenericRecord> changeDecoder = changesTopic == null ? null
        : new BinaryMessageDecoder<>(GenericData.get(), load(opts.get("--avro-dir"), "OrderChange"));

    Map<String, Snapshot> snapshots = new LinkedHashMap<>();
    for (String id : requestIds) {
      snapshots.put(id, new Snapshot(id));
    }
    Map<String, GenericRecord> statuses = new LinkedHashMap<>(); // key -> last AccountStatus
    Map<String, List<GenericRecord>> changes = new LinkedHashMap<>(); // order key -> its changes
    for (String key : changeKeys) {
      changes.put(key, new ArrayList<>());
    }

    // "rdkafka" = the system library (Debian: librdkafka1); a path loads that build instead.
    RdKafka rd = Native.load(opts.getOrDefault("--librdkafka", "rdkafka"), RdKafka.class);
    Pointer conf = rd.rd_kafka_conf_new();
    set(rd, conf, "bootstrap.servers", opts.get("--bootstrap"));
    set(rd, conf, "group.id", "order-events-example-java-" + ProcessHandle.current().pid()
        + "-" + System.currentTimeMillis());
    set(rd, conf, "auto.offset.reset", "earliest");
    set(rd, conf, "enable.auto.commit", "false");
    set(rd, conf, "session.timeout.ms", opts.get("--session-timeout-ms"));
    set(rd, conf, "heartbeat.interval.ms",
        Integer.toString(Math.max(500, Integer.parseInt(opts.get("--session-timeout-ms")) / 6)));
    // Broker security from the environment (never from arguments, which other users can see).
    String protocol = System.getenv().getOrDefault("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT");
    set(rd, conf, "security.protocol", protocol.toLowerCase());
    if (protocol.toUpperCase().startsWith("SASL_")) {
      set(rd, conf, "sasl.mechanisms", System.getenv().getOrDefault("KAFKA_SASL_MECHANISM", "PLAIN"));
      set(rd, conf, "sasl.username", System.getenv().getOrDefault("KAFKA_SASL_USERNAME", ""));
      set(rd, conf, "sasl.password", System.getenv().getOrDefault("KAFKA_SASL_PASSWORD", ""));
    }
    if (System.getenv("KAFKA_SSL_CAFILE") != null) {
      set(rd, conf, "ssl.ca.location", System.getenv("KAFKA_SSL_CAFILE"));
    }
    for (String nameValue : extraConfig) {
      int eq = nameValue.indexOf('=');
      set(rd, conf, nameValue.substring(0, eq), nameValue.substring(eq + 1));
    }
    byte[] err = new byte[512];
    Pointer rk = rd.rd_kafka_new(RdKafka.RD_KAFKA_CONSUMER, conf, err, err.length);
    if (rk == null) {
      System.err.println("error: " + Native.toString(err));
      System.exit(2);
    }
    rd.rd_kafka_poll_set_consumer(rk);
    Pointer topics = rd.rd_kafka_topic_partition_list_new(4);
    rd.rd_kafka_topic_partition_list_add(topics, ordersTopic, -1);
    rd.rd_kafka_topic_partition_list_add(topics, resultsTopic, -1);
    if (statusTopic != null) {
      rd.rd_kafka_topic_partition_list_add(topics, statusTopic, -1);
    }
    if (changesTopic != null) {
      rd.rd_kafka_topic_partition_list_add(topics, changesTopic, -1);
    }
    int rc = rd.rd_kafka_subscribe(rk, topics);
    rd.rd_kafka_topic_partition_list_destroy(topics);
    if (rc != 0) {
      System.err.println("error: subscribe: " + rd.rd_kafka_err2str(rc));
      System.exit(2);
    }

    long deadline = System.currentTimeMillis() + Long.parseLong(opts.get("--timeout-ms"));
    int undecodable = 0;
    boolean allJudged = false;
    // A compacted table is read to its end, not to its first record per key: once everything
    // asked for is seen, stop at the first quiet poll (no record for a second), so the status
    // kept per key is the last one written.
    while (System.currentTimeMillis() < deadline) {
      Pointer msg = rd.rd_kafka_consumer_poll(rk, allJudged ? 1000 : 200);
      if (msg == null) {
        if (allJudged) {
          break;
        }
        continue;
      }
      try {
        int code = msg.getInt(MSG_ERR);
        if (code != 0) {
          if (code != RdKafka.RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            System.err.println("consumer error: " + rd.rd_kafka_err2str(code));
          }
          continue;
        }
        Pointer payload = msg.getPointer(MSG_PAYLOAD);
        long len = msg.getLong(MSG_LEN);
        if (payload == null || len == 0) {
          continue;
        }
        byte[] value = payload.getByteArray(0, (int) len);
        String topic = rd.rd_kafka_topic_name(msg.getPointer(MSG_RKT));
        boolean isOrder = topic.equals(ordersTopic);
        boolean isStatus = topic.equals(statusTopic);
        boolean isChange = topic.equals(changesTopic);
        Pointer keyPtr = msg.getPointer(MSG_KEY);
        String key = keyPtr == null ? null : new String(
            keyPtr.getByteArray(0, (int) msg.getLong(MSG_KEY_LEN)),
            java.nio.charset.StandardCharsets.UTF_8);
        GenericRecord record;
        try {
          record = (isStatus ? statusDecoder : isChange ? changeDecoder
              : isOrder ? orderDecoder : resultDecoder).decode(value);
        } catch (org.apache.avro.AvroRuntimeException e) {
          // Unknown fingerprint (a newer schema) or not single-object encoded (00 + id is the
          // registry framing): a real consumer fetches the schema; it never drops silently.
          undecodable++;
          continue;
        }
        if (isStatus) {
          statuses.put(key, record); // compacted topic: the last record per key wins
        } else if (isChange) {
          if (changes.containsKey(key)) {
            changes.get(key).add(record);
          }
        } else {
          Snapshot snap = snapshots.get(record.get("request_id").toString());
          if (snap == null) {
            continue;
          }
          if (isOrder) {
            snap.addOrder(record);
          } else {
            snap.addResult(record);
          }
        }
        allJudged = snapshots.values().stream().allMatch(Snapshot::judged)
            && statuses.keySet().containsAll(statusKeys)
            && changes.values().stream().allMatch(list -> !list.isEmpty());
      } finally {
        rd.rd_kafka_message_destroy(msg);
      }
    }
    rd.rd_kafka_consumer_close(rk);
    rd.rd_kafka_destroy(rk);

    for (Snapshot snap : snapshots.values()) {
      System.out.println(snap.toJson());
    }
    for (String key : statusKeys) {
      System.out.println(statusJson(key, statuses.get(key)));
    }
    for (Map.Entry<String, List<GenericRecord>> e : changes.entrySet()) {
      StringBuilder list = new StringBuilder("[");
      for (GenericRecord c : e.getValue()) {
        list.append(list.length() > 1 ? "," : "").append(changeJson(c));
      }
      System.out.println("{\"change_key\":" + quote(e.getKey()) + ",\"changes\":" + list + "]}");
    }
    System.out.println("{\"summary\":true,\"all_judged\":" + allJudged
        + ",\"undecodable\":" + undecodable
        + ",\"librdkafka\":" + quote(rd.rd_kafka_version_str())
        + ",\"avro_decoder\":\"org.apache.avro.message.BinaryMessageDecoder\"}");
    System.exit(allJudged ? 0 : 1);
  }
}
