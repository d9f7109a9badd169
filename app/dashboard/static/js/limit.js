// At most `n` tasks at once, the others queued in order: a view's charts are loaded one
// request per chart, a few at a time, so that 20 charts neither wait for one huge answer
// nor hit the service with 20 cold reads of MLflow at once.

// limiter(3) -> run(task, onStart): run(task) resolves or rejects as task() does, once a
// place was free; onStart() is called when the task leaves the queue.
export function limiter(n) {
  let running = 0;
  const queue = [];
  const next = () => {
    if (running >= n || !queue.length) return;
    const {task, onStart, resolve, reject} = queue.shift();
    running += 1;
    if (onStart) onStart();
    Promise.resolve().then(task).then(resolve, reject).finally(() => {
      running -= 1;
      next();
    });
  };
  return (task, onStart) => new Promise((resolve, reject) => {
    queue.push({task, onStart, resolve, reject});
    next();
  });
}
