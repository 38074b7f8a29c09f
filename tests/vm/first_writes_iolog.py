"""first_writes_iolog.py HALF_BYTES - print a fio iolog of first writes: one 4 KiB
write into each 64 KiB chunk of the first HALF_BYTES of a device, in a shuffled order
(fixed seed: the same on every stack and every run). The device name is replaced by
fio's --replay_redirect. Used by bench_fio.sh and profile_copyout.sh."""
import random
import sys

half = int(sys.argv[1])
r = random.Random(5)
chunks = list(range(half // 65536))
r.shuffle(chunks)
print("fio version 2 iolog\n/dev/bench add\n/dev/bench open")
for c in chunks:
    print(f"/dev/bench write {c * 65536 + r.randrange(16) * 4096} 4096")
print("/dev/bench close")
