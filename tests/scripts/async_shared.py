# One task ("shared") awaited by two others ("waiter-a", "waiter-b"): its awaited_by is a
# set, not a single task. For `dump --async`.
import asyncio


async def shared_work():
    await asyncio.sleep(3600)


async def wait_for(task):
    await task


async def main():
    shared = asyncio.create_task(shared_work(), name="shared")
    a = asyncio.create_task(wait_for(shared), name="waiter-a")
    b = asyncio.create_task(wait_for(shared), name="waiter-b")
    for _ in range(5):
        await asyncio.sleep(0)
    # From a loop callback, so "ready" is seen only once main is suspended in the gather.
    asyncio.get_running_loop().call_soon(lambda: print("ready", flush=True))
    await asyncio.gather(a, b)


asyncio.run(main())
