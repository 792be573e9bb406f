"""consumer.py reads topics compressed with every codec Kafka offers: gzip, snappy, lz4, zstd.

The topics are written by another client, kcat (librdkafka) with ``-z CODEC``, as a learner's
topics may be written by Kafka's own tools or a service in another language. kafka-python
decompresses gzip with the standard library; the other codecs need the packages pinned in
requirements.txt. Without kcat (``apt-get install kcat``; .ci/run installs it) the tests skip.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

import consumer

CODECS = ["gzip", "snappy", "lz4", "zstd"]

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(shutil.which("kcat") is None,
                       reason="kcat is not installed (apt-get install kcat, or brew install kcat): "
                              "it writes the compressed topics"),
]


def compressible(codec: str, count: int) -> list[str]:
    """Values that compress well: librdkafka sends a batch uncompressed when compression
    would not make it smaller."""
    return [f"{codec}-event-{number} " + "kafka " * 40 for number in range(count)]


def write_with_kcat(bootstrap: str, topic: str, codec: str, values: list[str]) -> None:
    """Send ``values`` in one batch compressed with ``codec`` (kcat's -z), and wait for the acks."""
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-z", codec, "-X", "acks=all"],
                   input="\n".join(values) + "\n", text=True, check=True, timeout=60,
                   capture_output=True)


@pytest.mark.parametrize("codec", CODECS)
def test_consumer_reads_a_topic_compressed_with(codec, bootstrap_servers, topic, monkeypatch, capsys):
    values = compressible(codec, 5)
    write_with_kcat(bootstrap_servers, topic, codec, values)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap_servers)
    status = consumer.main(["--topic", topic, "--from-beginning", "--max-messages", "5",
                            "--timeout-ms", "15000"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert [line.rsplit("value=", 1)[1] for line in out.splitlines()] == values
    assert "Processed a total of 5 messages" in err


@pytest.mark.parametrize("codec", CODECS)
def test_without_its_codec_package_the_topic_cannot_be_read(codec, bootstrap_servers, topic,
                                                            monkeypatch, capsys):
    """The proof that kcat really compressed the batch, and what a learner saw before the
    packages were in requirements.txt: one line naming the codec."""
    import kafka.codec

    write_with_kcat(bootstrap_servers, topic, codec, compressible(codec, 5))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap_servers)
    monkeypatch.setattr(kafka.codec, f"has_{codec}", lambda: False)
    status = consumer.main(["--topic", topic, "--from-beginning", "--max-messages", "1",
                            "--timeout-ms", "15000"])
    out, err = capsys.readouterr()
    assert status == 1 and out == ""
    assert f"UnsupportedCodecError: Libraries for {codec} compression codec not found" in err
