"""Queue triggers: poll a Storage (Azurite) queue and run the function per message, as the Functions host does.

- Messages are fetched in batches of up to `batchSize` and processed concurrently on threads; the next batch is
  fetched once in-flight messages drop to `newBatchThreshold` (default batchSize / 2).
- Bodies are base64-decoded unless host.json sets `messageEncoding: none`.
- Success deletes the message. Failure makes it visible again after host.json's `visibilityTimeout`; when the
  failed delivery was number `maxDequeueCount` (default 5) the message moves, content unchanged, to
  `<queue>-poison` instead. Running past host.json's functionTimeout is a failure, settled at the deadline,
  not when the abandoned function finally returns.
- An idle queue is polled with exponential backoff up to the maximum polling interval.
"""
from __future__ import annotations

import base64
import binascii
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from azure.functions.queue import QueueMessage as TriggerMessage
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueMessage

from devhost.catalog import QueueFunction
from devhost.hostjson import QueueOptions
from devhost.invocation import FunctionTimeoutError

log = logging.getLogger("devhost")

# A received message stays invisible this long while its function runs (the Functions host's 10-minute lease).
LEASE_SECONDS = 600
FIRST_POLL_DELAY = 0.05
POISON_SUFFIX = "-poison"


def decode_body(content: str, encoding: str) -> bytes:
    """The bytes a queue-triggered function receives for this stored message text."""
    if encoding == "none":
        return content.encode("utf-8")
    try:
        return base64.b64decode(content.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("message is not valid base64 (host.json extensions.queues.messageEncoding is base64)") from exc


def _client(connection_string: str, queue_name: str) -> QueueClient:
    # Few SDK retries: the poll loop itself retries with backoff, and a hung retry would delay shutdown.
    return QueueClient.from_connection_string(connection_string, queue_name, retry_total=2,
                                              connection_timeout=5, read_timeout=30)


def _ensure_queue(client: QueueClient) -> None:
    try:
        client.create_queue()
    except ResourceExistsError:
        return


class QueueListener:
    def __init__(self, function: QueueFunction, options: QueueOptions, stop: threading.Event,
                 max_poll_interval: float, function_timeout: float | None = None) -> None:
        self.function = function
        self.function_timeout = function_timeout
        self.options = options
        self.stop = stop
        self.max_poll_interval = max(FIRST_POLL_DELAY, max_poll_interval)
        self.client = _client(function.connection_string, function.queue_name)
        self.poison = _client(function.connection_string, function.queue_name + POISON_SUFFIX)
        self.in_flight = 0
        self.changed = threading.Condition()
        self.pool = ThreadPoolExecutor(max_workers=options.batch_size, thread_name_prefix=f"queue-{function.name}")
        self.thread = threading.Thread(target=self._run, name=f"poll-{function.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def _run(self) -> None:
        name = self.function.queue_name
        log.info("Queue trigger '%s': listening on queue '%s'", self.function.name, name)
        delay = FIRST_POLL_DELAY
        queue_ready = False
        try:
            while not self.stop.is_set():
                with self.changed:
                    # Wait for room: fetch again only when in-flight work drops to the refill threshold.
                    while self.in_flight > self.options.refill_threshold and not self.stop.is_set():
                        self.changed.wait(0.2)
                    room = self.options.batch_size - self.in_flight
                if self.stop.is_set():
                    break
                try:
                    if not queue_ready:
                        _ensure_queue(self.client)
                        queue_ready = True
                    messages = list(self.client.receive_messages(
                        messages_per_page=room, max_messages=room, visibility_timeout=LEASE_SECONDS))
                except AzureError as exc:
                    log.warning("Queue '%s': polling failed (%s); retrying in %.1f s", name, type(exc).__name__,
                                self.max_poll_interval)
                    queue_ready = False
                    self.stop.wait(self.max_poll_interval)
                    continue
                if not messages:
                    self.stop.wait(delay)
                    delay = min(delay * 2, self.max_poll_interval)
                    continue
                delay = FIRST_POLL_DELAY
                with self.changed:
                    self.in_flight += len(messages)
                for message in messages:
                    self.pool.submit(self._process, message)
        finally:
            # Graceful shutdown: everything fetched was submitted, so this waits for in-flight messages only.
            self.pool.shutdown(wait=True)

    def _process(self, message: QueueMessage) -> None:
        try:
            self._deliver(message)
        except Exception:
            log.exception("Queue '%s': could not settle message %s", self.function.queue_name, message.id)
        finally:
            with self.changed:
                self.in_flight -= 1
                self.changed.notify_all()

    def _deliver(self, message: QueueMessage) -> None:
        count = int(message.dequeue_count or 1)
        limit = self.options.max_dequeue_count
        if count > limit:
            # Already delivered too often (e.g. maxDequeueCount was lowered): poison it without running.
            self._move_to_poison(message)
            return
        try:
            body = decode_body(str(message.content), self.options.message_encoding)
        except ValueError as exc:
            log.error("Queue '%s': message %s: %s", self.function.queue_name, message.id, exc)
            self._failed(message, count)
            return
        try:
            trigger = TriggerMessage(
                id=message.id, body=body, dequeue_count=count, expiration_time=message.expires_on,
                insertion_time=message.inserted_on, time_next_visible=message.next_visible_on,
                pop_receipt=message.pop_receipt,
            )
            self.function.invoker.call(trigger, f"New queue message detected on '{self.function.queue_name}'.",
                                       retry_count=count - 1, timeout=self.function_timeout)
        except FunctionTimeoutError:
            log.error("Queue function '%s' timed out on message %s (delivery %d of %d)", self.function.name,
                      message.id, count, limit)
            self._failed(message, count)
            return
        except Exception:
            log.exception("Queue function '%s' failed on message %s (delivery %d of %d)", self.function.name,
                          message.id, count, limit)
            self._failed(message, count)
            return
        try:
            self.client.delete_message(message.id, message.pop_receipt)
        except ResourceNotFoundError:
            log.warning("Queue '%s': message %s was gone before it could be deleted", self.function.queue_name,
                        message.id)

    def _failed(self, message: QueueMessage, count: int) -> None:
        if count >= self.options.max_dequeue_count:
            self._move_to_poison(message)
        else:
            self.client.update_message(message.id, message.pop_receipt,
                                       visibility_timeout=int(self.options.visibility_timeout))

    def _move_to_poison(self, message: QueueMessage) -> None:
        _ensure_queue(self.poison)
        # The stored text is copied as is, so the poison queue keeps the same encoding.
        self.poison.send_message(message.content)
        self.client.delete_message(message.id, message.pop_receipt)
        log.warning("Queue '%s': message %s moved to '%s' after %s deliveries", self.function.queue_name,
                    message.id, self.poison.queue_name, message.dequeue_count)
