"""Write data/sample-stream.jsonl: a made-up X stream that `twitter-stream.py --replay` publishes.

Every user and every text is invented. The file is in the wire format of the v2 stream:
one JSON object per line ("data" with the tweet, "includes" with its author), lines ended
by "\\r\\n", keep-alive blank lines now and then, one line cut short (malformed) and one
in-stream error object, so that a replay meets what a live stream sends. A fixed seed
makes the file the same on every run:

    $ python data/make_sample_tweets.py
    wrote 300 tweets, 12 keep-alives, 1 malformed line and 1 error object to data/sample-stream.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

OUTPUT = Path(__file__).resolve().with_name("sample-stream.jsonl")
SEED = 20261125
TWEETS = 300
KEEP_ALIVES = 12
FIRST_ID = 1_861_000_000_000_000_000  # shaped like a real snowflake id, 19 digits
START = datetime(2026, 11, 25, 18, 0, tzinfo=timezone.utc)

FIRST_NAMES = ["Ada", "Bram", "Chidi", "Dara", "Elif", "Femi", "Greta", "Hiro", "Ines", "Jonas",
               "Kaia", "Luca", "Mira", "Noor", "Oskar", "Priya", "Quinn", "Rosa", "Sven", "Tove"]
LAST_NAMES = ["Birchwood", "Cole", "Dunmore", "Ferro", "Galloway", "Hask", "Ivers", "Juniper",
              "Kestrel", "Lund", "Marlow", "Nightly", "Orchard", "Pike", "Quarry", "Rook"]
SUBJECTS = ["my sourdough starter", "the 8:15 train", "our team's Kafka cluster", "the new espresso machine",
            "this week's sprint", "the garden hose", "my cat", "the office plant", "the build server",
            "the rain", "my running shoes", "the consumer lag graph", "the bike lane", "grandma's soup recipe"]
VERBS = ["finally works", "is on fire today", "needs a nap", "surprised everyone", "broke again",
         "is the best thing this month", "has opinions", "made my morning", "is running late",
         "deserves a raise", "just hit a new record", "is suspiciously quiet"]
ENDINGS = ["", "", " #streaming", " #kafka", " 🎉", " ☕", " 🚲", " (again)", " #python", " 🌧️"]
OTHER_LANGUAGES = [
    ("es", "Hoy el tren llegó a tiempo. ¡Milagro!"),
    ("de", "Der Kaffee ist fertig, der Code noch nicht."),
    ("fr", "Il pleut encore, parfait pour coder."),
    ("pt", "Meu gato dormiu em cima do teclado de novo."),
    ("ja", "今日のビルドは一回で通った！"),
    ("nl", "De fiets staat weer in de regen."),
]
# The in-stream error object X sends before it ends a stream (its "handling disconnections" docs).
OPERATIONAL_DISCONNECT = {"errors": [{
    "title": "operational-disconnect",
    "disconnect_type": "UpstreamOperationalDisconnect",
    "detail": "This stream has been disconnected upstream for operational reasons.",
    "type": "https://api.twitter.com/2/problems/operational-disconnect",
}]}


def make_users(rng: random.Random) -> list[dict]:
    users = []
    for index, first in enumerate(FIRST_NAMES):
        last = rng.choice(LAST_NAMES)
        users.append({
            "id": str(1_500_000_000 + index * 7919),
            "name": f"{first} {last}",
            "username": f"{first.lower()}_{last.lower()}{rng.randint(1, 99)}",
        })
    return users


def make_tweet(rng: random.Random, number: int, users: list[dict]) -> dict:
    author = rng.choice(users)
    tweet_id = str(FIRST_ID + number * 4_096 + rng.randrange(4_096))
    if rng.random() < 0.15:
        lang, text = rng.choice(OTHER_LANGUAGES)
    else:
        lang = "en"
        subject = rng.choice(SUBJECTS)
        text = f"{subject[0].upper()}{subject[1:]} {rng.choice(VERBS)}{rng.choice(ENDINGS)}"
    created = START + timedelta(milliseconds=number * 180 + rng.randrange(180))
    return {
        "data": {
            "author_id": author["id"],
            "created_at": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "edit_history_tweet_ids": [tweet_id],
            "id": tweet_id,
            "lang": lang,
            "text": text,
        },
        "includes": {"users": [author]},
    }


def stream_lines(seed: int = SEED, tweets: int = TWEETS) -> list[bytes]:
    """The file's lines without their "\\r\\n"; b"" is a keep-alive."""
    rng = random.Random(seed)
    users = make_users(rng)
    lines = [json.dumps(make_tweet(rng, number, users), ensure_ascii=False, separators=(",", ":")).encode()
             for number in range(tweets)]
    keep_alive_at = sorted(rng.sample(range(1, tweets), KEEP_ALIVES), reverse=True)
    for position in keep_alive_at:
        lines.insert(position, b"")
    # A line cut off mid-object, as a broken connection would leave it.
    malformed_at = tweets // 3
    lines.insert(malformed_at, lines[malformed_at][: len(lines[malformed_at]) // 2])
    lines.insert(2 * tweets // 3, json.dumps(OPERATIONAL_DISCONNECT, separators=(",", ":")).encode())
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the synthetic replay file for twitter-stream.py.")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"where to write (default {OUTPUT.name})")
    parser.add_argument("--tweets", type=int, default=TWEETS, help=f"how many tweets (default {TWEETS})")
    parser.add_argument("--seed", type=int, default=SEED, help="random seed (default: the one the shipped file uses)")
    options = parser.parse_args(argv)
    lines = stream_lines(options.seed, options.tweets)
    options.output.write_bytes(b"".join(line + b"\r\n" for line in lines))
    shown = options.output.resolve()
    if shown.is_relative_to(Path.cwd()):
        shown = shown.relative_to(Path.cwd())
    print(f"wrote {options.tweets} tweets, {KEEP_ALIVES} keep-alives, 1 malformed line and 1 error object "
          f"to {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
