// The guest: VS-mode with vsatp = Bare (guest virtual = guest physical).
// One page, mapped by the G-stage at G_CODE; the hypervisor enters a
// routine with a0..a3 set. Each ends in ECALL unless it faults first.

.section .guest_text, "ax"
.balign 4096
.global guest_start, g_copy, g_load, g_store, g_loadb, g_call
guest_start:

// a0 = source GPA, a1 = destination GPA, a2 = words (> 0), a3 = XOR key.
g_copy:
    ld      t0, 0(a0)
    xor     t0, t0, a3
    sd      t0, 0(a1)
    addi    a0, a0, 8
    addi    a1, a1, 8
    addi    a2, a2, -1
    bnez    a2, g_copy
    fence
    ecall

// a1 = [a0] (64 bits)
g_load:
    ld      a1, 0(a0)
    ecall

// [a0] = a1 (64 bits)
g_store:
    sd      a1, 0(a0)
    fence
    ecall

// a1 = [a0] (one byte)
g_loadb:
    lbu     a1, 0(a0)
    ecall

// Calls a0 (which should exit by itself).
g_call:
    jalr    a0
    li      a3, 0x77
    ecall
.balign 4096
