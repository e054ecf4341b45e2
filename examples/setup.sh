#!/usr/bin/env bash
# Builds the consumer examples (examples/java, examples/node) for the test suite. Idempotent and
# quiet: installs only what is missing, from the package registries (Debian, npm).
#   Java: Apache Avro (libavro-java), JNA (libjna-java) and their jars from Debian, compiled with
#         plain javac; the Kafka client is librdkafka via JNA (docs/consuming.md, section 7).
#   Node: avsc + kafkajs at the exact versions of examples/node/package-lock.json (npm ci).
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages for whatever is missing: the jars on java/classpath, a JDK, Node and npm.
packages=()
while read -r jar; do
  [ -f "$jar" ] || packages+=(libavro-java libjackson-json-java libslf4j-java libjna-java)
done < java/classpath
command -v javac >/dev/null || packages+=(openjdk-17-jdk-headless)
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
if [ ${#packages[@]} -gt 0 ]; then
  mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
  echo "examples: installing ${packages[*]}"
  as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >/dev/null 2> >(grep -v '^debconf: delaying' >&2)
fi

classes=java/build/OrderSnapshotConsumer.class
if [ ! -f "$classes" ] || [ java/src/OrderSnapshotConsumer.java -nt "$classes" ]; then
  javac -d java/build -cp "$(paste -sd: java/classpath)" java/src/OrderSnapshotConsumer.java
fi

if [ ! -f node/node_modules/.package-lock.json ] \
   || [ node/package-lock.json -nt node/node_modules/.package-lock.json ]; then
  (cd node && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
