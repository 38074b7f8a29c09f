/*
 * tests/vm/ublk-features.c - ask ublk_drv for its feature flags.
 *
 * Sends UBLK_U_CMD_GET_FEATURES to /dev/ublk-control over io_uring
 * (IORING_OP_URING_CMD with 128-byte SQEs), i.e. the same path a ublk
 * server's control commands take.  Raw syscalls only, so it needs neither
 * liburing nor new kernel headers.  smoke.sh builds and runs it in the VM.
 *
 * Exit status: 0 and the flags on stdout, or 1 with a message on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* From include/uapi/linux/ublk_cmd.h (kernel >= 6.5). */
struct ublksrv_ctrl_cmd {
	uint32_t dev_id;
	uint16_t queue_id;
	uint16_t len;
	uint64_t addr;
	uint64_t data[1];
	uint16_t dev_path_len;
	uint16_t pad;
	uint32_t reserved;
};
/* _IOR('u', 0x13, struct ublksrv_ctrl_cmd) */
#define UBLK_U_CMD_GET_FEATURES \
	((2u << 30) | ((uint32_t)sizeof(struct ublksrv_ctrl_cmd) << 16) | ('u' << 8) | 0x13)

static const char *const flag_names[] = {
	"SUPPORT_ZERO_COPY", "URING_CMD_COMP_IN_TASK", "NEED_GET_DATA",
	"USER_RECOVERY", "USER_RECOVERY_REISSUE", "UNPRIVILEGED_DEV",
	"CMD_IOCTL_ENCODE", "USER_COPY", "ZONED", "USER_RECOVERY_FAIL_IO",
	"UPDATE_SIZE", "AUTO_BUF_REG", "QUIESCE", "PER_IO_DAEMON",
	"BUF_REG_OFF_DAEMON",
};

static int die(const char *what)
{
	fprintf(stderr, "ublk-features: %s: %s\n", what, strerror(errno));
	return 1;
}

int main(void)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQE128;
	int ring = syscall(__NR_io_uring_setup, 4, &p);
	if (ring < 0)
		return die("io_uring_setup(SQE128)");

	size_t sq_sz = p.sq_off.array + p.sq_entries * sizeof(uint32_t);
	size_t cq_sz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	char *sq = mmap(NULL, sq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
			ring, IORING_OFF_SQ_RING);
	char *cq = mmap(NULL, cq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
			ring, IORING_OFF_CQ_RING);
	char *sqes = mmap(NULL, p.sq_entries * 128, PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED)
		return die("mmap io_uring");

	int ctl = open("/dev/ublk-control", O_RDWR);
	if (ctl < 0)
		return die("open /dev/ublk-control");

	uint64_t features = 0;
	struct ublksrv_ctrl_cmd cmd = {
		.dev_id = UINT32_MAX, .queue_id = UINT16_MAX,
		.len = sizeof(features), .addr = (uintptr_t)&features,
	};
	struct io_uring_sqe *sqe = (struct io_uring_sqe *)sqes;
	memset(sqe, 0, 128);
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = ctl;
	sqe->cmd_op = UBLK_U_CMD_GET_FEATURES;
	memcpy(sqe->cmd, &cmd, sizeof(cmd));

	uint32_t *sq_tail = (uint32_t *)(sq + p.sq_off.tail);
	uint32_t *sq_mask = (uint32_t *)(sq + p.sq_off.ring_mask);
	uint32_t *sq_array = (uint32_t *)(sq + p.sq_off.array);
	sq_array[*sq_tail & *sq_mask] = 0;
	__atomic_store_n(sq_tail, *sq_tail + 1, __ATOMIC_RELEASE);

	if (syscall(__NR_io_uring_enter, ring, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
		return die("io_uring_enter");

	uint32_t *cq_head = (uint32_t *)(cq + p.cq_off.head);
	uint32_t *cq_tail = (uint32_t *)(cq + p.cq_off.tail);
	uint32_t *cq_mask = (uint32_t *)(cq + p.cq_off.ring_mask);
	if (*cq_head == __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE)) {
		fprintf(stderr, "ublk-features: no completion\n");
		return 1;
	}
	struct io_uring_cqe *cqe =
		(struct io_uring_cqe *)(cq + p.cq_off.cqes) + (*cq_head & *cq_mask);
	if (cqe->res < 0) {
		errno = -cqe->res;
		return die("UBLK_U_CMD_GET_FEATURES");
	}

	printf("ublk features 0x%llx:", (unsigned long long)features);
	for (unsigned i = 0; i < 64; i++) {
		if (!(features & (1ull << i)))
			continue;
		if (i < sizeof(flag_names) / sizeof(flag_names[0]))
			printf(" %s", flag_names[i]);
		else
			printf(" bit%u", i);
	}
	printf("\n");
	return 0;
}
