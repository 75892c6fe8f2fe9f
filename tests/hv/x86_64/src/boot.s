// The AMD SVM hypervisor's own assembly: its PVH entry note (QEMU's loader
// enters `_start`, in ../../common/x86_longmode.s, in 32-bit protected mode
// with flat segments) and the world switch. AT&T syntax.

// The PVH entry point: Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY (type 18),
// name "Xen", a 32-bit physical address. QEMU reads the descriptor at the
// name's size rounded up to the segment's alignment: keep it 4.
.section .note.Xen, "a", @note
.balign 4
    .long 4                 // name size ("Xen\0")
    .long 4                 // descriptor size
    .long 18                // XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .long _start

// svm_run(vmcb_pa: u64 [rdi], regs: *mut [u64; 4] [rsi]): runs the guest
// with rdi, rsi, rdx, rcx = regs[0..4] until its next #VMEXIT, then stores
// the guest's rdi, rsi, rdx, rcx back into regs. VMRUN saves and restores
// the host's rsp, rax, rflags, segments and control registers (through
// VM_HSAVE_PA); the callee-saved registers are kept on the stack.
.section .text, "ax"
.global svm_run
svm_run:
    pushq   %rbx
    pushq   %rbp
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    pushq   %rsi
    movq    %rdi, %r8
    movq    %rsi, %rax
    movq    0(%rax), %rdi
    movq    8(%rax), %rsi
    movq    16(%rax), %rdx
    movq    24(%rax), %rcx
    movq    %r8, %rax
    clgi
    vmrun   %rax
    // #VMEXIT: rsp and rax are the host's again (rax = the VMCB).
    movq    (%rsp), %rax
    movq    %rdi, 0(%rax)
    movq    %rsi, 8(%rax)
    movq    %rdx, 16(%rax)
    movq    %rcx, 24(%rax)
    stgi
    popq    %rsi
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbp
    popq    %rbx
    ret
