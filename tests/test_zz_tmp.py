import asyncio, time, asyncssh
def test_x(sshd_host):
    h = sshd_host
    async def main():
        conn = await asyncssh.connect(h.address, port=h.port, username="root", client_keys=[h.client_key], known_hosts=h.known_hosts)
        print("is_closed" , hasattr(conn, "is_closed"))
        proc = await conn.create_process("echo $$ >&2; exec bash -c 'echo hi; sleep 5; echo bye'", encoding=None)
        proc.stdin.write_eof()
        print(await proc.stderr.read(100))
        print(await proc.stdout.read(100))
        t=time.time()
        import threading; threading.Timer(0.3, h.kill).start()
        try:
            d = await proc.stdout.read(100); print("read", d)
        except Exception as e:
            print("read exc", type(e), e)
        try:
            r = await proc.wait(); print("wait", r.exit_status, r.exit_signal, r.returncode)
        except Exception as e:
            print("wait exc", type(e), e)
        print("closed?", conn.is_closed() if hasattr(conn,'is_closed') else None, time.time()-t)
        try:
            await conn.create_process("true")
        except Exception as e:
            print("create exc", type(e), e)
        # signal test
        h.start()
        conn = await asyncssh.connect(h.address, port=h.port, username="root", client_keys=[h.client_key], known_hosts=h.known_hosts)
        proc = await conn.create_process("bash -c 'trap \"echo got TERM; exit 3\" TERM; echo ready; sleep 5 & wait'", encoding=None)
        print(await proc.stdout.read(100))
        proc.send_signal("TERM")
        try:
            r = await asyncio.wait_for(proc.wait(), 2); print("sig wait", r.exit_status, r.exit_signal, await proc.stdout.read(100))
        except asyncio.TimeoutError:
            print("signal not honored")
        # known hosts match
        kh = asyncssh.read_known_hosts(h.known_hosts)
        print(kh.match("127.0.0.1", "", h.port)[0])
    asyncio.run(main())
