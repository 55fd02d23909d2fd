"""Send a few tasks, each inside the context of a different customer."""

from __future__ import annotations

from tasks import send_receipt

import moetrack


def main() -> None:
    for n, customer in enumerate(["alice", "bob", "carol"], start=1):
        with moetrack.context(customer_id=customer):
            send_receipt.delay(f"order-{n}", amount=1000 * n)
    print("sent 3 tasks")


if __name__ == "__main__":
    main()
