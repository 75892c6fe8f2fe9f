// The guest: 64-bit mode, CPL 0, its own page tables mapping every guest
// virtual address it uses to the same guest-physical address. One page,
// mapped by the nested table at G_CODE; the hypervisor enters a routine
// with rdi, rsi, rdx, rcx set. Each ends in `guest_exit`, a
// macro the hypervisor defines (VMMCALL, VMCALL), unless it faults first.
// AT&T syntax.

.section .guest_text, "ax"
.code64
.balign 4096
.global guest_start, g_copy, g_load, g_store, g_jump
guest_start:

// rdi = source GPA, rsi = destination GPA, rdx = words (> 0), rcx = XOR key.
g_copy:
    movq    (%rdi), %rax
    xorq    %rcx, %rax
    movq    %rax, (%rsi)
    addq    $8, %rdi
    addq    $8, %rsi
    decq    %rdx
    jnz     g_copy
    guest_exit

// rsi = [rdi] (64 bits)
g_load:
    movq    (%rdi), %rsi
    guest_exit

// [rdi] = rsi (64 bits)
g_store:
    movq    %rsi, (%rdi)
    guest_exit

// Jumps to rdi (which should end the run by itself).
g_jump:
    jmp     *%rdi

.balign 4096
