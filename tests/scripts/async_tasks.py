# Three named asyncio tasks awaiting each other ("outer" awaits "middle", which awaits
# "inner"), each suspended a few coroutines deep, for `dump --async` / `record --async`.
# Lines that tests check carry a "# LINE:tag" marker; tests find them by reading this file.
import asyncio
import sys


async def inner_leaf():
    await asyncio.sleep(3600)  # LINE:inner_leaf


async def inner_work():
    await inner_leaf()  # LINE:inner_work


async def middle_work():
    inner = asyncio.create_task(inner_work(), name="inner")
    await inner  # LINE:middle_work


async def outer_work():
    middle = asyncio.create_task(middle_work(), name="middle")
    await middle  # LINE:outer_work


async def main():
    outer = asyncio.create_task(outer_work(), name="outer")
    # Let the three tasks reach their awaits before saying so.
    for _ in range(5):
        await asyncio.sleep(0)
    # Say so from a loop callback, which runs only once this task is suspended in the await
    # below: printing here would let a test read "ready" while main is still on this line.
    asyncio.get_running_loop().call_soon(lambda: print("ready", flush=True))
    await outer  # LINE:main


asyncio.run(main())
sys.exit(0)
