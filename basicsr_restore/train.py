"""``python -m basicsr_restore.train -opt X.yml [--auto_resume] [--launcher ...]``: basicsr's training runner
with this package registered and the current directory as root (experiments/, tb_logger/ go there).

Same arguments as ``python -m basicsr.train``. Resume works on machines without CUDA.
"""
import os

from basicsr_restore.host import compat


def main(pipeline='train'):
    if pipeline == 'train':
        import basicsr.train as runner
        run = runner.train_pipeline
    else:
        import basicsr.test as runner
        run = runner.test_pipeline
    compat.apply_runner_fixes()
    run(os.getcwd())


if __name__ == '__main__':
    main('train')
