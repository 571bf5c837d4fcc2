# The coroutine part of features.py (Python 3 only): an asyncio coroutine that is running
# (it blocks in time.sleep, so its frame is on the thread's stack, not suspended).
# Lines that tests check carry a "# LINE:tag" marker; tests find them by reading this file.
import asyncio
import time

import __main__


async def crunch():
    __main__.parked.append("coroutine")
    while True: time.sleep(3600)  # LINE:crunch


async def drive():
    await crunch()  # LINE:await


def run_async():
    # A loop of its own, not asyncio.run (3.7+): this runs on 3.6 as well.
    loop = asyncio.new_event_loop()
    loop.run_until_complete(drive())  # LINE:asyncio_run
